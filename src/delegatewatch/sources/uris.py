"""Paths that are URIs (``file://``, ``s3://``/``s3a://``, ``abfs[s]://``, ``gs://``, ``hdfs://``),
resolved to a :mod:`pyarrow.fs` filesystem: the one filesystem layer the Spark driver, its
executors and the event-lake writer share. Plain paths stay plain (the local disk, or a mount every
node sees such as Databricks' ``/dbfs``).

An S3-compatible store (MinIO, Ceph, an on-premises object store) is named as the AWS SDKs name it:
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. The Spark driver ships its endpoint to the executors
(:func:`use_s3_endpoint`), so they read the store the driver listed whatever their own environment says."""

from __future__ import annotations

import os
from functools import lru_cache
from urllib.parse import quote, urlparse

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


#: The AWS SDKs' settings for another S3 endpoint, the S3-specific one first.
S3_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_shipped: dict[str, str | None] = {}


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint to use, None for AWS itself: on a Spark executor the driver's,
    else this process's ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``."""
    return _shipped.get("s3") or next((value for name in S3_ENDPOINT_VARS if (value := os.environ.get(name))), None)


def use_s3_endpoint(endpoint: str | None) -> None:
    """On a Spark executor: use the driver's endpoint (None: the executor's own settings). The Python
    workers' environment is fixed when the cluster (or a local session's JVM) starts, so the driver's
    setting would otherwise not reach a session that was already running."""
    _shipped["s3"] = endpoint


@lru_cache(maxsize=32)
def _filesystem(scheme: str, netloc: str, endpoint: str | None) -> pafs.FileSystem:
    query = f"?endpoint_override={quote(endpoint, safe='')}" if endpoint else ""  # explicit: an executor's is the driver's
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}/{query}")
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
    return _filesystem(scheme, parsed.netloc, s3_endpoint() if scheme == "s3" else None), inner_path(path)


def join(base: str, *parts: str) -> str:
    """``base`` (URI or path) / parts."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
