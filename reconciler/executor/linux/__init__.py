"""The real Linux executor: one concern per module (cgroups, rootfs, caps, network, ...)."""
