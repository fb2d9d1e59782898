"""A real S3-compatible server (moto) on a loopback port, for tests that talk S3 over HTTP."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

# moto accepts any credentials; these keep boto3 from looking for real ones (files, instance metadata).
TEST_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Start moto's S3 server on a free loopback port with test credentials set; yield its endpoint URL."""
    saved = {name: os.environ.get(name) for name in TEST_AWS_ENVIRONMENT}
    os.environ.update(TEST_AWS_ENVIRONMENT)
    # Port 0 lets the kernel pick a free port at bind time, so there is no window for another process.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        inner = getattr(server, "_server", None)
        if inner is not None:
            inner.server_close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.cache
def admin_client(endpoint: str) -> Any:
    # Building a boto3 client costs about 0.1 s; one per server keeps the S3 tests quick.
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    """A new empty bucket on the server; its name."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name
