"""The task's `artifact` block, as Nomad validates it (structs.go TaskArtifact.Validate) and as
go-getter reads its source. Pure: the download itself is the executor's.

Nomad passes `options` to go-getter as URL query parameters; `checksum`, `archive` and
`filename` are go-getter's own, the rest go to the server with the request.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import field_validator
from pydantic_core import PydanticCustomError

from reconciler.spec.fieldtypes import Scalar, Strict

CHECKSUM_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}
# go-getter's getters; reconciler fetches http, https and (where git is installed) git.
SUPPORTED_GETTERS = ("http", "https", "git")
UNSUPPORTED_GETTERS = ("s3", "gcs", "hg")
GIT_HOSTS = ("github.com/", "gitlab.com/", "bitbucket.org/")
GETTER_PARAMS = ("checksum", "archive", "filename")  # go-getter's own; the rest go to the server
_FORCED = re.compile(r"^([A-Za-z0-9]+)::(.*)$", re.S)


class Artifact(Strict):
    source: str
    destination: str = ""  # "": local/ (mode "file": local/<basename of the source>)
    mode: Literal["any", "file", "dir"] = "any"
    options: dict[str, Scalar] = {}
    headers: dict[str, Scalar] = {}
    chown: bool = False
    insecure: bool = False

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not v.strip():
            raise PydanticCustomError("artifact", "source must be specified")
        if "${" not in v and (why := getter_problem(v)):
            raise PydanticCustomError("artifact", why)
        return v

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        if "${" not in v and escapes_alloc_dir(v):
            raise PydanticCustomError("artifact", "destination escapes allocation directory")
        return v

    @field_validator("options")
    @classmethod
    def _checksum(cls, v: dict[str, str]) -> dict[str, str]:
        if "checksum" in v and (why := checksum_problem(v["checksum"])):
            raise PydanticCustomError("artifact", why)
        return v


def forced_getter(source: str) -> tuple[str, str]:
    """("git", "https://...") for "git::https://..."; ("", source) without a prefix."""
    m = _FORCED.match(source)
    return (m.group(1).lower(), m.group(2)) if m else ("", source)


@dataclass(frozen=True, slots=True)
class Source:
    """A source as go-getter reads it: the getter, the URL without go-getter's own query
    parameters, those parameters, and the URL's path (which names the file and its archive
    type)."""

    getter: str
    url: str
    checksum: str = ""
    archive: str = ""
    filename: str = ""
    path: str = ""


def parse_source(source: str) -> Source:
    """The one reading of an artifact source, for load-time checks and for the fetch: a
    forced getter (`git::`), else go-getter's detectors (GitHub, GitLab, Bitbucket, `git@`),
    else the URL scheme; a path with no scheme is a local file (go-getter's file detector)."""
    forced, rest = forced_getter(source)
    if not forced and rest.startswith(GIT_HOSTS):
        repo, _, options = rest.partition("?")
        forced = "git"
        rest = "https://" + repo + ("" if repo.endswith(".git") else ".git")
        rest += "?" + options if options else ""
    elif not forced and rest.startswith("git@"):
        forced = "git"  # an ssh remote: the fetcher refuses it by name (https remotes only)
    parts = urlsplit(rest)
    scheme = parts.scheme.lower()
    getter = forced or (scheme if len(scheme) > 1 else "file")
    query = parse_qsl(parts.query, keep_blank_values=True)
    magic = {k: v for k, v in query if k in GETTER_PARAMS}
    url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query
                                                     if k not in magic])))  # fmt: skip
    return Source(getter, url, magic.get("checksum", ""), magic.get("archive", ""),
                  magic.get("filename", ""), parts.path)  # fmt: skip


def getter_of(source: str) -> str:
    return parse_source(source).getter


def getter_problem(source: str) -> str:
    """Refused at load time: getters reconciler does not have (file: is refused at download,
    as Nomad does, so that the task records it)."""
    g = getter_of(source)
    if g in UNSUPPORTED_GETTERS:
        return (f'getter "{g}" is not supported by reconciler '
                f"(it fetches {', '.join(SUPPORTED_GETTERS)})")  # fmt: skip
    return ""


def parse_checksum(value: str) -> tuple[str, bytes]:
    """("sha256", digest) for "sha256:<hex>"; ValueError in Nomad's words otherwise."""
    check = value.strip()
    if not check:
        raise ValueError("checksum value cannot be empty")
    parts = check.split(":")
    if len(parts) != 2:
        raise ValueError(f'checksum must be given as "type:value"; got "{check}"')
    kind, hexval = parts
    try:
        raw = bytes.fromhex(hexval)
    except ValueError:
        raise ValueError(f"invalid checksum: {hexval!r} is not hexadecimal") from None
    if kind not in CHECKSUM_SIZES:
        raise ValueError(f"unsupported checksum type: {kind}")
    if len(raw) != CHECKSUM_SIZES[kind]:
        raise ValueError(f"invalid {kind} checksum: {hexval}")
    return kind, raw


def checksum_problem(value: str) -> str:
    """Nomad's words for a bad `options.checksum`; a value with `${` is checked at start."""
    if "${" in value:
        return ""
    try:
        parse_checksum(value)
    except ValueError as e:
        return str(e)
    return ""


def escapes_alloc_dir(dest: str) -> bool:
    """Nomad's PathEscapesAllocDir("task", dest): relative to <alloc>/task, absolute paths
    re-rooted under it; `..` may climb to the alloc dir but not above it."""
    joined = posixpath.normpath(posixpath.join("/alloc-id/task", dest.lstrip("/")))
    return not (joined == "/alloc-id" or joined.startswith("/alloc-id/"))


def digest(fields: tuple[str, ...]) -> str:
    """A short stable name for one artifact's resolved settings (what 'done' remembers)."""
    return hashlib.sha256("\0".join(fields).encode("utf-8", "surrogateescape")).hexdigest()[:32]
