#!/usr/bin/env python3
"""Recomputes Errand's pairing and session test vector (docs/protocol.md, "Test vectors")
with an independent implementation: only the Python standard library, with X25519,
ChaCha20-Poly1305 and HChaCha20 written out from RFC 7748 / RFC 8439 / draft-irtf-cfrg-xchacha.

Exit status 0 when every value matches the published one.
"""
import base64
import hashlib
import hmac
import struct
import sys

# --- X25519 (RFC 7748) ---------------------------------------------------------------
P = 2**255 - 19
A24 = 121665


def x25519(scalar: bytes, u: bytes) -> bytes:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + A24 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def x25519_public(scalar: bytes) -> bytes:
    return x25519(scalar, (9).to_bytes(32, "little"))


# --- ChaCha20, Poly1305, XChaCha20-Poly1305 (RFC 8439, draft-irtf-cfrg-xchacha-03) -------
def rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)


def rounds(state):
    s = list(state)
    for _ in range(10):
        quarter(s, 0, 4, 8, 12); quarter(s, 1, 5, 9, 13); quarter(s, 2, 6, 10, 14); quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15); quarter(s, 1, 6, 11, 12); quarter(s, 2, 7, 8, 13); quarter(s, 3, 4, 9, 14)
    return s


CONSTANTS = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]


def chacha_block(key, counter, nonce):
    state = CONSTANTS + list(struct.unpack("<8I", key)) + [counter] + list(struct.unpack("<3I", nonce))
    mixed = rounds(state)
    return struct.pack("<16I", *[(m + s) & 0xFFFFFFFF for m, s in zip(mixed, state)])


def chacha20(key, counter, nonce, data):
    out = bytearray()
    for i in range(0, len(data), 64):
        block = chacha_block(key, counter + i // 64, nonce)
        out += bytes(x ^ y for x, y in zip(data[i:i + 64], block))
    return bytes(out)


def poly1305(key, msg):
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    acc, p = 0, (1 << 130) - 5
    for i in range(0, len(msg), 16):
        n = int.from_bytes(msg[i:i + 16] + b"\x01", "little")
        acc = (acc + n) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def hchacha20(key, nonce16):
    state = CONSTANTS + list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    s = rounds(state)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def pad16(b):
    return b"\x00" * (-len(b) % 16)


def xchacha20poly1305_seal(key, nonce24, plaintext, ad):
    subkey = hchacha20(key, nonce24[:16])
    nonce = b"\x00\x00\x00\x00" + nonce24[16:]
    otk = chacha_block(subkey, 0, nonce)[:32]
    ct = chacha20(subkey, 1, nonce, plaintext)
    mac_data = ad + pad16(ad) + ct + pad16(ct) + struct.pack("<QQ", len(ad), len(ct))
    return ct + poly1305(otk, mac_data)


# --- HKDF / HMAC (RFC 5869 / RFC 2104, SHA-256) --------------------------------------
def hmac_sha256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def hkdf(ikm, salt, info, length):
    prk = hmac_sha256(salt if salt else b"\x00" * 32, ikm)
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac_sha256(prk, block + info + bytes([i]))
        out += block
    return out[:length]


def frame(*fields):
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def seq(start, count=32):
    return bytes((start + i) & 0xFF for i in range(count))


# --- The vector -------------------------------------------------------------------------
URI = ("errand://pair?v=1&r=https://relay.example.com&s=UFFSU1RVVldYWVpbXF1eXw"
       "&k=A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg&x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ"
       "&t=QEFCQ0RFRkdISUpLTE1OTw&e=1767225600"
       "&a=relay.example.com%2Be1f35565%2BAekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k&n=studio-mac")
AUDIT_KEY = "relay.example.com+e1f35565+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SECRET = seq(0x40, 16)
HOST_X = seq(0x20)
COMPANION_X = seq(0x80)
COMPANION_EPHEMERAL = seq(0xA0)
HOST_RATCHET = seq(0xC0)
COMPANION_RATCHET = seq(0x10)
HOST_SEND_TOKEN = seq(0xE0)
ENVELOPE_ID = seq(0x30, 16)
# The Ed25519 public key of seed 0x60 0x61 … 0x7f (RFC 8032 key generation).
COMPANION_ED25519 = bytes.fromhex("174553b456dddfc6908ecab1c101fe6ab21e2baa0617795b7d43a63482993fd5")

EXPECTED = {
    "requestBody": "01174553b456dddfc6908ecab1c101fe6ab21e2baa0617795b7d43a63482993fd5493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23ce0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000570686f6e65",
    "proof": "6c67c948cb8161977768ac314be0e2da84464973b1fdf91d3efb0f6fcb08d850",
    "requestBinding": "b64821a1028b96deb65306a7e458f5482c547ccf94d4076d98f4f32ffc88812d",
    "rootKey": "108077a09a9dd7ff4fd58c3d4fd0b54f4e636c1df867e77e7f515597ba3eb16d",
    "initiatorHeaderKey": "dc0c1ab21c0cac89e08b1512d657eb88a3c6a5efed35623ae196fe026a216d45",
    "responderNextHeaderKey": "3961c0cee16f6bab88c16169c5ff0ac3382098c7128f78a4e511b1b5a8b7f395",
    "confirmationKey": "3693bb63699e74341a3ef9bf2dd06d457154fcf4744939717acbe790366a9a6c",
    "firstMessage": "01303132333435363738393a3b3c3d3e3f010101010101010101010101010101010101010101010101b66c5c516aef562d0e4a6b1651c30afbd63442cd3a465516dd808355eec089b1bf762f715d72323dafe52dc607d186c3459c4216a6e2aefb2549eff29407e0b03c8bac8e7a51b9e1377067455024b9fc4da5d774344086ad62c707a61c08e2e661551b8a6b0ecfb36fc4f8fcb0b0477a1e80b3f5b7ed28cfe37de4365127e54b6a4c025f4e72c6fc59a4f2a19395da7e3471ee5207737dd88f2bc9035175c71cdc7a5e6457d361ae78fde21fc07e1cd838e86c3a2cb95ee4228654e41d17b8518e877460f19e6f9e0fc934eced87af1a0243e4ece50aed580e1d4144dfabbf2a76f5628e18726b23755a9d382481b9475ff8f625572813e331cbaa4f0ad27ffc8f0b519ff810c7d3fd0be01ce5f56ed59d7cb38f6311be27c8b8795757407c70ef7131ae75ba810b1bd77cda49f8bbc552f8b9f2286414da47bc7f0452e4b4420037f523e22d5999",
}


def compute():
    companion_x_pub = x25519_public(COMPANION_X)
    ephemeral_pub = x25519_public(COMPANION_EPHEMERAL)
    host_x_pub = x25519_public(HOST_X)
    host_ratchet_pub = x25519_public(HOST_RATCHET)
    transcript_hash = hashlib.sha256(frame(b"errand pairing transcript v1", URI.encode(), COMPANION_ED25519, companion_x_pub)).digest()

    name = b"phone"
    body = b"\x01" + COMPANION_ED25519 + companion_x_pub + ephemeral_pub + HOST_SEND_TOKEN + struct.pack(">H", len(name)) + name
    proof_key = hkdf(SECRET, transcript_hash, b"errand/v1/pair-proof", 32)
    proof = hmac_sha256(proof_key, b"errand pairing proof v1" + transcript_hash + body)
    binding = hashlib.sha256(COMPANION_ED25519 + companion_x_pub + ephemeral_pub).digest()

    ikm = (SECRET + x25519(HOST_X, companion_x_pub) + x25519(HOST_X, ephemeral_pub)
           + x25519(HOST_RATCHET, companion_x_pub) + x25519(HOST_RATCHET, ephemeral_pub))
    keys = hkdf(ikm, transcript_hash, b"errand/v1/pair-session", 128)
    root, hka, nhkb, confirmation = keys[:32], keys[32:64], keys[64:96], keys[96:]
    ad = b"errand/v1/session" + transcript_hash

    # Initiator's first message (Double Ratchet with header encryption).
    ratchet_out = hkdf(x25519(COMPANION_RATCHET, host_ratchet_pub), root, b"errand/v1/ratchet-root", 96)
    chain_key = ratchet_out[32:64]
    message_key = hmac_sha256(chain_key, b"\x01")
    header = x25519_public(COMPANION_RATCHET) + struct.pack(">II", 0, 0)
    header_nonce = b"\x01" * 24
    message_ad = ad + ENVELOPE_ID
    encrypted_header = header_nonce + xchacha20poly1305_seal(hka, header_nonce, header, message_ad)
    body_keys = hkdf(message_key, b"\x00" * 32, b"errand/v1/ratchet-message", 56)
    padded = b"hello" + b"\x80" + b"\x00" * (256 - 6)
    ciphertext = xchacha20poly1305_seal(body_keys[:32], body_keys[32:], padded, message_ad + encrypted_header)
    envelope = b"\x01" + ENVELOPE_ID + encrypted_header + ciphertext

    return {
        "requestBody": body, "proof": proof, "requestBinding": binding, "rootKey": root,
        "initiatorHeaderKey": hka, "responderNextHeaderKey": nhkb, "confirmationKey": confirmation,
        "firstMessage": envelope,
    }


def main():
    # Self-checks of the primitives against their RFCs first.
    assert x25519(bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                  bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")).hex() \
        == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552", "X25519 (RFC 7748 5.2)"
    assert hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")).hex() \
        == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc", "HChaCha20 (xchacha-03 2.2.1)"
    # The offer's audit key is a real verifier key: id = SHA-256(name ‖ LF ‖ 0x01 ‖ key)[0..4].
    name, key_id, key = AUDIT_KEY.split("+", 2)
    raw_key = base64.b64decode(key, validate=True)
    assert raw_key[0] == 1 and len(raw_key) == 33, "audit key: an Ed25519 verifier key"
    assert hashlib.sha256(name.encode() + b"\n" + raw_key).digest()[:4].hex() == key_id, "audit key id"
    assert "&a=" + AUDIT_KEY.replace("+", "%2B") + "&" in URI, "the URI carries the audit key"
    failures = 0
    for name, value in compute().items():
        if value.hex() == EXPECTED[name]:
            print(f"ok   {name}")
        else:
            failures += 1
            print(f"FAIL {name}\n  computed {value.hex()}\n  expected {EXPECTED[name]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
