"""Both storage backends behave the same: a folder on disk and S3 (moto's server over real HTTP)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import httpx
import pytest

from mvne.infra.storage import (
    FileStorage,
    ObjectNotFound,
    S3Storage,
    Storage,
    StorageUnavailable,
    build_storage,
)
from tests.support.s3 import admin_client, new_bucket


def test_an_object_that_was_put_can_be_read_back(storage: Storage) -> None:
    storage.put("tenants/ten_1/invoices/inv_1.pdf", b"%PDF-1.7", content_type="application/pdf")

    assert storage.get("tenants/ten_1/invoices/inv_1.pdf") == b"%PDF-1.7"
    assert storage.exists("tenants/ten_1/invoices/inv_1.pdf")
    assert not storage.exists("tenants/ten_1/invoices/inv_2.pdf")


def test_an_objects_size_is_its_bytes_and_a_missing_one_has_none(storage: Storage) -> None:
    storage.put("usage/incoming/net/a.csv", b"x" * 1234)

    assert storage.size("usage/incoming/net/a.csv") == 1234
    with pytest.raises(ObjectNotFound):
        storage.size("usage/incoming/net/b.csv")
    with pytest.raises(ObjectNotFound):
        storage.size("usage/incoming/net")  # a folder of keys is no object


def test_putting_again_replaces_the_object(storage: Storage) -> None:
    storage.put("a/b.txt", b"first")
    storage.put("a/b.txt", b"second")

    assert storage.get("a/b.txt") == b"second"
    assert storage.list("a/") == ["a/b.txt"]


def test_binary_data_round_trips_byte_for_byte(storage: Storage) -> None:
    data = bytes(range(256)) * 64 + os.urandom(300_000)

    storage.put("blobs/random.bin", data)

    assert storage.get("blobs/random.bin") == data


def test_a_file_put_from_its_current_position_is_stored_whole_and_replaces_the_object(
    storage: Storage, tmp_path: Path
) -> None:
    data = os.urandom(9 * 1024 * 1024)  # past boto3's multipart threshold: sent in parts
    source = tmp_path / "big.bin"
    source.write_bytes(b"skipped" + data)
    storage.put("exports/big.bin", b"old")

    with source.open("rb") as reader:
        reader.seek(len(b"skipped"))
        storage.put_file("exports/big.bin", reader, content_type="application/x-ndjson")

    assert storage.get("exports/big.bin") == data
    assert storage.list("exports/") == ["exports/big.bin"]


def test_an_empty_object_is_still_an_object(storage: Storage) -> None:
    storage.put("empty", b"")

    assert storage.exists("empty")
    assert storage.get("empty") == b""


def test_lines_are_read_one_by_one_without_their_line_ends(storage: Storage) -> None:
    # Larger than one read of either backend, with a line that straddles two reads.
    body = b"".join(b"line %d %s\r\n" % (n, b"x" * 100) for n in range(2000)) + b"last without an end"
    storage.put("usage/big.csv", body)

    lines = storage.lines("usage/big.csv")
    first = next(lines)

    assert first == b"line 0 " + b"x" * 100
    assert [first, *lines] == body.split(b"\r\n")


def test_a_byte_range_reads_the_whole_lines_it_holds_and_its_bytes_exactly(storage: Storage) -> None:
    body = b"".join(b"line %d %s\n" % (n, b"y" * 50) for n in range(3000))
    storage.put("usage/ranged.csv", body)
    # Cut at line starts, as a usage file's segments are.
    cuts = [0, body.index(b"line 1000 "), body.index(b"line 2999 "), len(body)]

    pieces = [list(storage.lines("usage/ranged.csv", start, end)) for start, end in itertools.pairwise(cuts)]

    assert [len(piece) for piece in pieces] == [1000, 1999, 1]
    assert pieces[1][0] == b"line 1000 " + b"y" * 50
    assert [line for piece in pieces for line in piece] == body.split(b"\n")[:-1]
    assert b"".join(storage.blocks("usage/ranged.csv", cuts[1], cuts[2])) == body[cuts[1] : cuts[2]]
    assert b"".join(storage.blocks("usage/ranged.csv")) == body
    assert list(storage.lines("usage/ranged.csv", len(body), len(body))) == []


def test_reading_the_lines_of_a_missing_key_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        list(storage.lines("nothing/here.csv"))


def test_getting_a_missing_key_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.get("nowhere/missing.csv")


def test_object_not_found_is_a_key_error_so_callers_can_treat_storage_as_a_mapping() -> None:
    assert issubclass(ObjectNotFound, KeyError)


def test_deleting_removes_the_object_and_deleting_again_is_harmless(storage: Storage) -> None:
    storage.put("x/y/z.txt", b"z")

    storage.delete("x/y/z.txt")
    storage.delete("x/y/z.txt")

    assert not storage.exists("x/y/z.txt")
    assert storage.list("") == []


def test_list_returns_the_keys_starting_with_the_prefix_sorted(storage: Storage) -> None:
    for key in ["usage/incoming/simnet/b.csv", "usage/incoming/simnet/a.csv", "usage/done/c.csv", "other"]:
        storage.put(key, b"1")

    assert storage.list("usage/incoming/") == ["usage/incoming/simnet/a.csv", "usage/incoming/simnet/b.csv"]
    assert storage.list("usage/inc") == ["usage/incoming/simnet/a.csv", "usage/incoming/simnet/b.csv"]
    assert storage.list("usage/") == [
        "usage/done/c.csv",
        "usage/incoming/simnet/a.csv",
        "usage/incoming/simnet/b.csv",
    ]
    assert storage.list("") == [
        "other",
        "usage/done/c.csv",
        "usage/incoming/simnet/a.csv",
        "usage/incoming/simnet/b.csv",
    ]


def test_listing_a_prefix_with_nothing_under_it_gives_an_empty_list(storage: Storage) -> None:
    storage.put("present/one", b"1")

    assert storage.list("absent/") == []
    assert storage.list("present/one/deeper") == []


def test_move_puts_the_object_under_the_new_key_and_removes_the_old_one(storage: Storage) -> None:
    storage.put("usage/incoming/f.csv", b"record")

    storage.move("usage/incoming/f.csv", "usage/processed/2025/f.csv")

    assert storage.get("usage/processed/2025/f.csv") == b"record"
    assert not storage.exists("usage/incoming/f.csv")
    assert storage.list("usage/") == ["usage/processed/2025/f.csv"]


def test_moving_an_object_onto_its_own_key_keeps_it(storage: Storage) -> None:
    storage.put("same", b"kept")

    storage.move("same", "same")

    assert storage.get("same") == b"kept"


def test_moving_a_missing_key_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.move("missing", "elsewhere")
    assert not storage.exists("elsewhere")


@pytest.mark.parametrize(
    "bad_key",
    ["", "/leading/slash", "a/../b", "..", "a//b", "trailing/", "./a", "a\\b"],
)
def test_bad_keys_are_refused_before_touching_the_backend(storage: Storage, bad_key: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        storage.put(bad_key, b"x")
    with pytest.raises(ValueError, match="object key"):
        storage.get(bad_key)
    with pytest.raises(ValueError, match="object key"):
        storage.move("fine", bad_key)
    assert storage.list("") == []


def test_a_prefix_that_climbs_out_of_the_store_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="prefix"):
        storage.list("../")


def test_check_passes_on_a_working_backend(storage: Storage) -> None:
    storage.check()


def test_file_storage_writes_leave_no_temporary_files_behind(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "root")

    storage.put("deep/ly/nested/file.txt", b"content")
    storage.put("deep/ly/nested/file.txt", b"content 2")

    files = sorted(p.relative_to(tmp_path / "root").as_posix() for p in (tmp_path / "root").rglob("*"))
    assert files == ["deep", "deep/ly", "deep/ly/nested", "deep/ly/nested/file.txt"]


def test_file_storage_removes_folders_left_empty_by_delete_and_move(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.put("a/b/c.txt", b"c")
    storage.put("d/e.txt", b"e")

    storage.delete("a/b/c.txt")
    storage.move("d/e.txt", "f.txt")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_file_storage_url_is_none_because_files_are_served_by_the_application(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.put("a.txt", b"a")

    assert storage.url("a.txt") is None


def test_file_storage_check_fails_when_the_root_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")

    with pytest.raises(StorageUnavailable):
        FileStorage(blocker / "root").check()


def test_a_file_storage_key_cannot_also_be_a_folder_of_other_keys(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.put("a/b", b"1")

    with pytest.raises(ValueError, match="folder"):
        storage.put("a", b"2")
    with pytest.raises(ValueError, match="existing object"):
        storage.put("a/b/c", b"3")
    assert storage.get("a/b") == b"1"


def test_a_presigned_s3_url_downloads_the_bytes_over_plain_http(s3_endpoint: str) -> None:
    storage = S3Storage(new_bucket(s3_endpoint), prefix="tenants", endpoint_url=s3_endpoint)
    storage.put("ten_1/invoice.pdf", b"%PDF bytes \x00\xff", content_type="application/pdf")

    url = storage.url("ten_1/invoice.pdf", expires_in=60)

    assert url is not None
    assert "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"%PDF bytes \x00\xff"
    assert response.headers["content-type"] == "application/pdf"


def test_s3_list_reads_every_page_of_results(s3_endpoint: str) -> None:
    storage = S3Storage(new_bucket(s3_endpoint), endpoint_url=s3_endpoint, page_size=2)
    keys = [f"k/{n:02d}" for n in range(7)]
    for key in reversed(keys):
        storage.put(key, b"v")

    assert storage.list("k/") == keys


def test_s3_prefix_keeps_two_stores_apart_in_one_bucket(s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    first = S3Storage(bucket, prefix="/one/", endpoint_url=s3_endpoint)
    second = S3Storage(bucket, prefix="two", endpoint_url=s3_endpoint)

    first.put("same.txt", b"first")
    second.put("same.txt", b"second")

    assert first.get("same.txt") == b"first"
    assert second.get("same.txt") == b"second"
    assert first.list("") == ["same.txt"]
    listed = admin_client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == ["one/same.txt", "two/same.txt"]


def test_s3_check_fails_for_a_bucket_that_does_not_exist(s3_endpoint: str) -> None:
    with pytest.raises(StorageUnavailable, match="no-such-bucket"):
        S3Storage("no-such-bucket", endpoint_url=s3_endpoint).check()


def test_s3_check_fails_when_the_server_is_unreachable() -> None:
    storage = S3Storage("bucket", endpoint_url="http://127.0.0.1:9")

    with pytest.raises(StorageUnavailable):
        storage.check()


def test_build_storage_reads_a_relative_file_url(tmp_path: Path) -> None:
    storage = build_storage("file://var/storage")

    assert isinstance(storage, FileStorage)
    assert storage.root == Path("var/storage")


def test_build_storage_reads_an_absolute_file_url(tmp_path: Path) -> None:
    storage = build_storage(f"file://{tmp_path.as_posix()}/objects")

    assert isinstance(storage, FileStorage)
    assert storage.root == tmp_path / "objects"


def test_build_storage_reads_an_s3_url_with_bucket_and_prefix(s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)

    storage = build_storage(f"s3://{bucket}/mvne/prod", s3_endpoint_url=s3_endpoint, s3_region="eu-west-1")

    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == (bucket, "mvne/prod/")
    assert storage.client.meta.region_name == "eu-west-1"
    storage.put("k", b"v")
    assert storage.get("k") == b"v"


def test_build_storage_reads_an_s3_url_with_only_a_bucket() -> None:
    storage = build_storage("s3://my-bucket", s3_endpoint_url="")

    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.endpoint_url) == ("my-bucket", "", None)


@pytest.mark.parametrize("url", ["ftp://host/x", "/var/storage", "file://", "s3://", "s3:///prefix", ""])
def test_build_storage_refuses_other_urls_and_names_them(url: str) -> None:
    with pytest.raises(ValueError, match="storage URL") as excinfo:
        build_storage(url)
    assert repr(url) in str(excinfo.value)
