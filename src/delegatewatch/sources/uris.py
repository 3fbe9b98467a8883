"""Paths that are URIs (``file://``, ``s3://``/``s3a://``, ``abfs[s]://``, ``gs://``, ``hdfs://``),
resolved to a :mod:`pyarrow.fs` filesystem: the one filesystem layer the Spark driver, its
executors and the event-lake writer share. Plain paths stay plain (the local disk, or a mount every
node sees such as Databricks' ``/dbfs``)."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlparse

import pyarrow.fs as pafs

#: Hadoop scheme spellings pyarrow knows under another name.
_SCHEMES = {"s3a": "s3", "s3n": "s3"}


def is_uri(path: str) -> bool:
    """A URI with a scheme (not a Windows drive letter such as ``C:\\``)."""
    return len(urlparse(path).scheme) > 1


def local_path(path: str) -> str:
    """``dbfs:/x`` → ``/dbfs/x`` (Databricks' FUSE mount, visible on every node); other paths as given."""
    if path.startswith("dbfs:/"):
        return "/dbfs/" + path[len("dbfs:/"):].lstrip("/")
    return path


@lru_cache(maxsize=32)
def _filesystem(scheme: str, netloc: str) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}/")
    return fs


def inner_path(uri: str) -> str:
    """The path inside the URI's filesystem, without contacting it: ``bucket/key`` for object
    stores (S3, GCS), ``container/path`` for Azure (the account is the filesystem), the path for
    HDFS and ``file://``."""
    parsed = urlparse(uri)
    scheme = _SCHEMES.get(parsed.scheme.lower(), parsed.scheme.lower())
    if scheme in ("s3", "gs", "gcs"):
        return f"{parsed.netloc}{parsed.path}".rstrip("/") or parsed.netloc
    if scheme in ("abfs", "abfss"):
        container = parsed.netloc.split("@", 1)[0]
        return f"{container}{parsed.path}".rstrip("/") or container
    return parsed.path or "/"


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it for a URI or a plain path (one client per
    bucket or storage account, made on first use and reused)."""
    path = local_path(path)
    if not is_uri(path):
        return pafs.LocalFileSystem(), path
    parsed = urlparse(path)
    scheme = _SCHEMES.get(parsed.scheme.lower(), parsed.scheme.lower())
    if scheme == "file":
        return pafs.LocalFileSystem(), parsed.path
    return _filesystem(scheme, parsed.netloc), inner_path(path)


def join(base: str, *parts: str) -> str:
    """``base`` (URI or path) / parts."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
