"""Apply: perform a Plan through the executor and record every step in the store; task exits
land here too, and the restart policy decides what a slot does next."""

from reconciler.apply.applier import Applier
from reconciler.apply.core import Running, handle_of

__all__ = ["Applier", "Running", "handle_of"]
