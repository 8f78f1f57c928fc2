"""Provenance beside the residual score: what a file's metadata claims, read without decoding
pixels, never raising, and never touching the score."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from noisetrace.detector import Detector, ScanResult
from noisetrace.media.provenance import MAX_STR, c2pa_available, read_provenance, summary
from noisetrace.outputs.csvfile import write_csv
from noisetrace.outputs.records import result_from_record, to_record

XMP = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'xmp:CreatorTool="Generator Studio 2.1">'
    "<Iptc4xmpExt:DigitalSourceType>"
    "http://cv.iptc.org/newscodes/digitalsourcetype/{dst}"
    "</Iptc4xmpExt:DigitalSourceType>"
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def _image(seed: int = 0, side: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def _png_with(path: Path, **text: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v, zip=len(v) > 200)
    _image().save(path, pnginfo=info)
    return path


def test_sd_webui_parameters_chunk(tmp_path):
    params = (
        "a photo of a cat, masterpiece\nNegative prompt: blurry\n"
        "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Model: v1-5-pruned" + ", x" * 600  # long: truncated in the claim
    )
    p = _png_with(tmp_path / "sd.png", parameters=params)
    prov = read_provenance(p)
    assert prov["error"] is None and prov["ai_claimed"] is True
    [claim] = prov["claims"]
    assert claim["source"] == "png-text" and claim["key"] == "parameters"
    assert claim["generator"] == "Stable Diffusion web UI"
    assert claim["summary"].startswith("a photo of a cat")
    assert claim["summary"].endswith("...(truncated)") and len(claim["summary"]) < MAX_STR + 20
    assert summary(prov) == "ai-claimed: png-text (Stable Diffusion web UI)"


def test_comfyui_prompt_chunk_compressed_after_image_data(tmp_path):
    prompt = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}}})
    workflow = json.dumps({"nodes": [{"type": "KSampler"}] * 50})  # > 200 chars: zTXt
    p = _png_with(tmp_path / "comfy.png", prompt=prompt, workflow=workflow)
    # Move the text chunks after IDAT, where Pillow would have to decode pixels to see them.
    data = p.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos : pos + 12 + n])
        pos += 12 + n
    text = [c for c in chunks if c[4:8] in (b"tEXt", b"zTXt")]
    rest = [c for c in chunks if c not in text]
    assert len(text) == 2
    p.write_bytes(data[:8] + b"".join(rest[:-1] + text + rest[-1:]))
    prov = read_provenance(p)
    assert prov["error"] is None and prov["ai_claimed"] is True
    assert {c["key"]: c["generator"] for c in prov["claims"]} == {
        "prompt": "ComfyUI", "workflow": "ComfyUI",
    }  # fmt: skip
    assert "KSampler" in prov["claims"][0]["summary"]


def test_invokeai_and_novelai_chunks(tmp_path):
    p = _png_with(tmp_path / "inv.png", invokeai_metadata=json.dumps({"app_version": "3.0"}))
    assert read_provenance(p)["claims"][0]["generator"] == "InvokeAI"
    comment = json.dumps({"prompt": "x", "steps": 28, "n_samples": 1, "sampler": "k_euler"})
    p = _png_with(tmp_path / "nai.png", Software="NovelAI", Comment=comment)
    prov = read_provenance(p)
    assert prov["ai_claimed"] is True
    assert {c["generator"] for c in prov["claims"]} == {"NovelAI"}


def test_jpeg_exif_software_make_model(tmp_path):
    exif = Image.Exif()
    exif[0x0131] = "Adobe Lightroom 13.0"
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    p = tmp_path / "cam.jpg"
    _image().save(p, quality=90, exif=exif)
    prov = read_provenance(p)
    assert prov["error"] is None
    assert prov["claims"] == [
        {"source": "exif", "software": "Adobe Lightroom 13.0", "make": "Canon",
         "model": "Canon EOS R5"},
    ]  # fmt: skip
    assert prov["ai_claimed"] is False  # a camera claim and no generator claim
    assert "Canon EOS R5" in summary(prov)


@pytest.mark.parametrize(
    "software, ai",
    [("Midjourney v6", True), ("DALL-E 3", True), ("GIMP 2.10", None), ("Imagenomic 3", None)],
)
def test_exif_software_naming_a_generator(tmp_path, software, ai):
    exif = Image.Exif()
    exif[0x0131] = software
    p = tmp_path / "s.webp"
    _image().save(p, exif=exif)
    prov = read_provenance(p)
    assert prov["claims"] == [{"source": "exif", "software": software}]
    assert prov["ai_claimed"] is ai


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_xmp_digital_source_type(tmp_path, fmt):
    p = tmp_path / f"x.{fmt}"
    packet = XMP.format(dst="trainedAlgorithmicMedia")
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet)
        _image().save(p, pnginfo=info)
    else:
        _image().save(p, format=fmt, xmp=packet.encode())
    prov = read_provenance(p)
    assert prov["error"] is None
    assert prov["claims"] == [
        {"source": "xmp", "digital_source_type": "trainedAlgorithmicMedia",
         "creator_tool": "Generator Studio 2.1"},
    ]  # fmt: skip
    assert prov["ai_claimed"] is True


def test_xmp_digital_capture_is_not_an_ai_claim(tmp_path):
    p = tmp_path / "cap.jpg"
    _image().save(p, xmp=XMP.format(dst="digitalCapture").encode())
    prov = read_provenance(p)
    assert prov["claims"][0]["digital_source_type"] == "digitalCapture"
    assert prov["ai_claimed"] is False


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff", "bmp", "gif"])
def test_plain_file_claims_nothing(tmp_path, fmt):
    p = tmp_path / f"plain.{fmt}"
    _image().save(p, format=fmt)
    prov = read_provenance(p)
    assert prov == {"claims": [], "ai_claimed": None, "error": None}
    assert summary(prov) == "no claim"


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR garbage",  # chunk runs past the end
        b"\x89PNG\r\n\x1a\n\xff\xff\xff\xf0tEXt",  # absurd chunk length
        b"\xff\xd8\xff\xe1\x00\x01",  # JPEG segment shorter than its header
        b"",  # empty
        b"hello, not an image",
    ],
)
def test_corrupt_file_is_an_error_field(tmp_path, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    prov = read_provenance(p)
    assert isinstance(prov["error"], str) and prov["error"]
    assert prov["claims"] == [] and prov["ai_claimed"] is None


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_missing_file_and_bad_exif_do_not_raise(tmp_path):
    assert read_provenance(tmp_path / "missing.png")["error"]
    # An eXIf chunk of garbage: the generator claim before it is kept.
    p = _png_with(tmp_path / "e.png", parameters="x\nSteps: 1, Seed: 2")
    data = p.read_bytes()
    junk = b"MM\x00*\x00\x00\x00\x08\xff\xff"
    import zlib

    chunk = len(junk).to_bytes(4, "big") + b"eXIf" + junk
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    p.write_bytes(data[:-12] + chunk + data[-12:])
    prov = read_provenance(p)
    assert prov["ai_claimed"] is True
    assert prov["claims"][0]["generator"] == "Stable Diffusion web UI"


def test_scan_records_provenance_without_changing_the_score(tmp_path, tiny_model_dir):
    det = Detector.load(tiny_model_dir, device="cpu")
    im = _image(seed=3, side=96)
    plain, tagged = tmp_path / "plain.png", tmp_path / "tagged.png"
    im.save(plain)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a dog\nSteps: 20, Sampler: Euler a, Seed: 7")
    im.save(tagged, pnginfo=info)
    a, b = det.scan(plain), det.scan(tagged)
    assert a.error is None and b.error is None
    assert a.score == b.score and a.verdict == b.verdict  # metadata never moves the score
    assert a.provenance == {"claims": [], "ai_claimed": None, "error": None}
    assert b.provenance["ai_claimed"] is True
    assert b.provenance["claims"][0]["generator"] == "Stable Diffusion web UI"

    # Every output: JSON gets the object, CSV one line, a resumed record gets it back.
    rec = to_record(b)
    assert json.loads(json.dumps(rec))["provenance"] == b.provenance
    assert result_from_record(rec).provenance == b.provenance
    out = tmp_path / "o.csv"
    write_csv(out, [to_record(a), rec])
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["provenance"] for r in rows] == [
        "no claim", "ai-claimed: png-text (Stable Diffusion web UI)",
    ]  # fmt: skip


def test_scan_keeps_a_good_record_when_provenance_fails(tmp_path, tiny_model_dir, monkeypatch):
    import noisetrace.media.provenance as prov_mod

    det = Detector.load(tiny_model_dir, device="cpu")
    p = tmp_path / "a.png"
    _image(seed=4, side=64).save(p)
    good = det.scan(p)

    def boom(path):
        raise RuntimeError("metadata reader exploded")

    monkeypatch.setattr(prov_mod, "read_provenance", boom)
    res = det.scan(p)
    assert res.error is None and res.verdict == good.verdict and res.score == good.score
    assert "exploded" in res.provenance["error"]


def test_scan_of_a_broken_image_is_still_an_error_record(tmp_path, tiny_model_dir):
    det = Detector.load(tiny_model_dir, device="cpu")
    p = tmp_path / "trunc.png"
    _image().save(p)
    p.write_bytes(p.read_bytes()[:60])
    res = det.scan(p)
    assert res.verdict == "error" and res.score is None
    assert res.provenance is not None and res.provenance["error"]


def test_record_without_provenance_is_null():
    rec = ScanResult(path="x.mp4", kind="video").to_record()
    assert rec["provenance"] is None


# ---------------------------------------------------------------------------- C2PA
c2pa_only = pytest.mark.skipif(not c2pa_available(), reason="c2pa-python is not installed")


@c2pa_only
def test_c2pa_file_without_a_manifest_reports_none(tmp_path):
    from noisetrace.media.provenance import _c2pa_claim

    p = tmp_path / "a.jpg"
    _image().save(p)
    assert _c2pa_claim(p, "jpeg") is None  # c2pa-python itself finds no manifest
    assert read_provenance(p)["claims"] == []
    # C2PA-looking bytes but no manifest: at most an unvalidated claim, never an exception.
    q = _png_with(tmp_path / "b.png", Comment="jumb c2pa")
    prov = read_provenance(q)
    assert all(c.get("valid") is not True for c in prov["claims"] if c["source"] == "c2pa")


def _sign(src: bytes, mime: str, manifest: dict) -> bytes:
    """``src`` signed with a throw-away CA and signer made here (nothing is downloaded)."""
    import c2pa
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "noisetrace tests"),
        ])  # fmt: skip

    def usage(ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject, pub, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(name("Test CA"))
            .public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        )  # fmt: skip
        if not ca:
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        return b.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    chain = cert(name("Test Signer"), key.public_key(), False).public_bytes(pem)
    chain += cert(name("Test CA"), ca_key.public_key(), True).public_bytes(pem)
    pkey = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, pkey, None))
    out = io.BytesIO()
    c2pa.Builder(json.dumps(manifest)).sign(signer, mime, io.BytesIO(src), out)
    return out.getvalue()


@c2pa_only
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_c2pa_manifest_claim_signer_and_validation(tmp_path, fmt):
    buf = io.BytesIO()
    _image().save(buf, format=fmt)
    dst = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    manifest = {
        "claim_generator_info": [{"name": "TestGen", "version": "1.0"}],
        "title": f"made.{fmt}",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [
            {"action": "c2pa.created", "digitalSourceType": dst},
        ]}}],
    }  # fmt: skip
    signed = _sign(buf.getvalue(), f"image/{fmt}", manifest)
    p = tmp_path / "signed.bin"  # the name says nothing: the format is read from the content
    p.write_bytes(signed)
    prov = read_provenance(p)
    assert prov["error"] is None and prov["ai_claimed"] is True
    [claim] = [c for c in prov["claims"] if c["source"] == "c2pa"]
    assert claim["claim_generator"] == "TestGen 1.0"
    assert claim["signed_by"] == "noisetrace tests"
    assert claim["valid"] is True and claim["trusted"] is False  # no trust list offline
    assert claim["digital_source_type"] == "trainedAlgorithmicMedia"
    assert "signature valid" in summary(prov)

    # Change the bytes the manifest's hash covers: the claim stays, validation fails.
    data = bytearray(signed)
    data[-20] ^= 0xFF
    p.write_bytes(bytes(data))
    prov = read_provenance(p)
    [claim] = [c for c in prov["claims"] if c["source"] == "c2pa"]
    assert claim["valid"] is False and claim["validation_state"] == "Invalid"
    assert prov["error"] is None
