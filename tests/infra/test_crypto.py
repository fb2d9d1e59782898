from __future__ import annotations

import base64

import pytest

from mvne.infra.crypto import SecretBox, SecretBoxError, generate_key

AAD = b"sim_01HZX:ki"
KI = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def test_secret_box_decrypts_what_it_encrypted() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box.decrypt(box.encrypt(KI, AAD), AAD) == KI


def test_encrypted_blob_is_version_then_nonce_then_ciphertext_and_tag() -> None:
    blob = SecretBox.from_setting(generate_key()).encrypt(KI, AAD)
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + len(KI) + 16
    assert KI not in blob


def test_encrypting_the_same_secret_twice_gives_different_blobs() -> None:
    box = SecretBox.from_setting(generate_key())
    assert box.encrypt(KI, AAD) != box.encrypt(KI, AAD)


def test_changing_any_byte_of_the_blob_is_detected() -> None:
    box = SecretBox.from_setting(generate_key())
    blob = box.encrypt(KI, AAD)
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(SecretBoxError):
            box.decrypt(bytes(tampered), AAD)


def test_decrypting_with_another_aad_fails() -> None:
    box = SecretBox.from_setting(generate_key())
    with pytest.raises(SecretBoxError, match="authentication"):
        box.decrypt(box.encrypt(KI, AAD), b"sim_other:ki")


def test_decrypting_with_another_key_fails() -> None:
    blob = SecretBox.from_setting(generate_key()).encrypt(KI, AAD)
    with pytest.raises(SecretBoxError, match="authentication"):
        SecretBox.from_setting(generate_key()).decrypt(blob, AAD)


def test_a_truncated_blob_is_refused() -> None:
    box = SecretBox.from_setting(generate_key())
    with pytest.raises(SecretBoxError, match="too short"):
        box.decrypt(box.encrypt(b"", AAD)[:-1], AAD)


def test_a_blob_of_an_unknown_version_is_refused() -> None:
    box = SecretBox.from_setting(generate_key())
    blob = box.encrypt(KI, AAD)
    with pytest.raises(SecretBoxError, match="version 2"):
        box.decrypt(b"\x02" + blob[1:], AAD)


def test_from_setting_accepts_a_key_without_base64_padding() -> None:
    key = generate_key()
    blob = SecretBox.from_setting(key).encrypt(KI, AAD)
    assert SecretBox.from_setting(key.rstrip("=")).decrypt(blob, AAD) == KI


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("not base64!", "not urlsafe base64"),
        (base64.urlsafe_b64encode(b"k" * 16).decode(), "decodes to 16 bytes; it must be 32"),
        ("A", "not valid urlsafe base64"),
    ],
)
def test_from_setting_says_what_is_wrong_with_the_key(setting: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        SecretBox.from_setting(setting)


def test_secret_box_repr_never_shows_the_key() -> None:
    key = generate_key()
    box = SecretBox.from_setting(key)
    raw = base64.urlsafe_b64decode(key)
    for text in (repr(box), str(box)):
        assert key not in text
        assert repr(raw) not in text
        assert raw.hex() not in text
    assert "redacted" in repr(box)
