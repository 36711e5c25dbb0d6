"""Input images end to end: inlined files, shared encodings, URL images, downloads, optimisation."""

from __future__ import annotations

import base64
import functools
import http.server
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchbanana.plan.inputs import EncodedImageCache, inspect_file
from batchbanana.simulator import RunningSimulator
from tests.conftest import (
    FAKE_KEY,
    CliResult,
    RecordingServer,
    png_bytes,
    png_size,
    read_jsonl,
    results,
)

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving a folder; yields its base URL and the folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined,method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()
    thread.join()


def uncompressed_png(width: int, height: int) -> bytes:
    """A valid PNG stored without compression (zlib level 0): lossless optimisation shrinks it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes((200, 100, 50)) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


def test_one_reference_image_for_500_items_is_encoded_once(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """500 items sharing a reference image read and encode it once, and every request carries it."""
    (tmp_path / "ref.png").write_bytes(png_bytes(60, 30))
    items = [{"id": f"i{n}", "prompt": f"edit {n}", "images": ["ref.png"]} for n in range(500)]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=32)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "input images: 1 read and encoded once each for 500 inline use(s)" in result.stderr
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert {line["spec"]["images"][0]["sha256"] for line in lines} == {
        inspect_file(tmp_path / "ref.png").sha256
    }
    width, height = png_size((tmp_path / "out" / "i499.png").read_bytes())
    assert width == 2 * height  # the simulator decoded the inline image and followed its ratio


def test_shared_encoding_is_identical_to_encoding_each_time(tmp_path: Path) -> None:
    """The cached base64 equals a fresh encoding, and the file is read once however often used."""
    data = png_bytes(16, 16)
    (tmp_path / "a.png").write_bytes(data)
    image = inspect_file(tmp_path / "a.png")
    cache = EncodedImageCache()
    answers = {cache.get(image) for _ in range(500)}
    assert answers == {("image/png", base64.b64encode(data).decode())}
    assert cache.encodes == 1


def test_url_images_are_sent_as_file_data_by_default(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A URL image goes as fileData (the simulator accepts it unfetched); its spec keeps the URL."""
    items = [
        {
            "id": "u",
            "prompt": "edit",
            "images": [
                "https://example.com/a.png",
                {"url": "https://cdn.example/x", "mime_type": "image/jpeg"},
            ],
        }
    ]
    manifest = write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    spec = results(tmp_path / "out" / "ledger.jsonl")[0]["spec"]
    assert spec["images"] == [
        {"url": "https://example.com/a.png", "mime_type": "image/png"},
        {"url": "https://cdn.example/x", "mime_type": "image/jpeg"},
    ]


def test_inline_urls_downloads_and_inlines_each_url_once(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    file_server: tuple[str, Path],
) -> None:
    """With inline_urls, a URL image is downloaded once, sniffed and sent inline."""
    base, folder = file_server
    (folder / "wide").write_bytes(png_bytes(80, 20))  # no extension: the bytes tell the type
    items = [{"id": f"d{n}", "prompt": f"p{n}", "images": [f"{base}/wide"]} for n in range(3)]
    manifest = write_manifest(items, endpoint=simulator.url, inline_urls=True)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "1 read and encoded once each for 3 inline use(s)" in result.stderr
    width, height = png_size((tmp_path / "out" / "d0.png").read_bytes())
    assert width == 4 * height
    assert not list((tmp_path / "out").glob(".batchbanana-downloads-*"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(png_bytes(8, 8, padding=7_100_000), "7 MB", id="oversized"),
        pytest.param(b"<html>not an image</html>", "not a PNG", id="not-an-image"),
    ],
)
def test_inline_urls_rejects_bad_downloads_before_sending(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    file_server: tuple[str, Path],
    content: bytes,
    expected: str,
) -> None:
    """An oversized or non-image download is exit 2 naming the item and URL; nothing is sent."""
    base, folder = file_server
    (folder / "x.png").write_bytes(content)
    manifest = write_manifest(
        [{"id": "bad", "prompt": "p", "images": [f"{base}/x.png"]}],
        endpoint=simulator.url,
        inline_urls=True,
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert (
        expected in result.stderr and "'bad'" in result.stderr and f"{base}/x.png" in result.stderr
    )
    assert simulator.stats()["requests"] == 0


def test_inline_urls_reports_a_missing_url(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, file_server: tuple[str, Path]
) -> None:
    """A URL answering 404 is a clear exit-2 error before anything is sent."""
    base, _ = file_server
    manifest = write_manifest(
        [{"id": "gone", "prompt": "p", "images": [f"{base}/missing.png"]}],
        endpoint=simulator.url,
        inline_urls=True,
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert "404" in result.stderr
    assert simulator.stats()["requests"] == 0


def one_inlined_url(write_manifest: Writer, url: str, endpoint: str, **settings: Any) -> Path:
    """A manifest of one item, 'd', whose one image is `url`, downloaded and inlined."""
    items = [{"id": "d", "prompt": "p", "images": [url]}]
    return write_manifest(items, endpoint=endpoint, inline_urls=True, **settings)


def test_url_downloads_honour_proxy_settings_like_provider_requests(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    file_server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY sends downloads through the proxy (here a dead one: exit 2 naming the URL, with
    a hint, nothing sent); NO_PROXY exempts the host, as it does for provider requests."""
    base, folder = file_server
    (folder / "a.png").write_bytes(png_bytes(8, 8))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    manifest = one_inlined_url(write_manifest, f"{base}/a.png", simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert f"item 'd': images: {base}/a.png: no connection" in result.stderr
    assert "127.0.0.1:9" in result.stderr and "HINT:" in result.stderr
    assert simulator.stats()["requests"] == 0
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0


def test_url_downloads_go_through_a_live_http_proxy(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A download of a host only the proxy can reach is fetched through HTTP_PROXY and inlined;
    the provider request to an exempt (NO_PROXY) host goes direct; the proxy never sees the key."""
    recording_server.reply = lambda seen, body: (
        200,
        {"Content-Type": "image/png"},
        png_bytes(80, 20),
    )
    monkeypatch.setenv("HTTP_PROXY", recording_server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    manifest = one_inlined_url(write_manifest, "http://images.example.invalid/wide", simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert [(seen.method, seen.target) for seen in recording_server.seen] == [
        ("GET", "http://images.example.invalid/wide")
    ]
    assert FAKE_KEY not in str(recording_server.seen)
    width, height = png_size((tmp_path / "out" / "d.png").read_bytes())
    assert width == 4 * height  # the simulator received the downloaded image inline


def test_https_proxy_carries_url_downloads_and_provider_requests_alike(
    cli: Cli,
    write_manifest: Writer,
    recording_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """HTTPS_PROXY tunnels both a URL download and a provider request; a proxy refusing the
    tunnel fails the download (exit 2, nothing sent) and is a `connect_error`, not billed."""
    recording_server.reply = lambda seen, body: (403, {}, b"")
    monkeypatch.setenv("HTTPS_PROXY", recording_server.url)
    image = "https://images.example.invalid/a.png"
    download = one_inlined_url(
        write_manifest, image, "https://api.example.invalid", name="download.yaml"
    )
    result = cli("run", str(download), "--no-progress")
    assert result.exit_code == 2
    assert f"item 'd': images: {image}: no connection" in result.stderr
    send = write_manifest(
        [{"id": "s", "prompt": "p"}],
        name="send.yaml",
        endpoint="https://api.example.invalid",
        output_dir="out-send",
        retry={"max_attempts": 1},
    )
    assert cli("run", str(send), "--no-progress").exit_code == 1
    assert [
        (r["outcome"], r["billed"]) for r in results(tmp_path / "out-send" / "ledger.jsonl")
    ] == [("connect_error", "no")]
    assert [(seen.method, seen.target) for seen in recording_server.seen] == [
        ("CONNECT", "images.example.invalid:443"),
        ("CONNECT", "api.example.invalid:443"),
    ]
    assert FAKE_KEY not in str(recording_server.seen)


def test_optimize_inputs_lossless_sends_a_smaller_identical_image(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A badly compressed PNG is recompressed losslessly; plan reports the saving; the run is ok
    and the fingerprint still uses the original bytes."""
    from PIL import Image

    original = uncompressed_png(300, 200)
    (tmp_path / "big.png").write_bytes(original)
    manifest = write_manifest(
        [{"id": "o", "prompt": "p", "images": ["big.png"]}],
        endpoint=simulator.url,
        optimize_inputs="lossless",
    )
    plan = cli("plan", str(manifest))
    assert plan.exit_code == 0 and "lossless saves" in plan.stdout
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "lossless optimisation saved" in result.stderr
    spec = read_jsonl(tmp_path / "out" / "ledger.jsonl")[1]["spec"]
    assert spec["images"][0]["sha256"] == inspect_file(tmp_path / "big.png").sha256
    import io

    from batchbanana.plan.inputs import optimize_lossless

    smaller = optimize_lossless(original, "image/png")
    assert len(smaller) < len(original)
    with Image.open(io.BytesIO(smaller)) as a, Image.open(io.BytesIO(original)) as b:
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda p: p.write_text("hello"), "not a PNG", id="text-named-png"),
        pytest.param(
            lambda p: p.write_bytes(png_bytes(8, 8, padding=8_000_000)), "7 MB", id="8-MB-image"
        ),
    ],
)
def test_bad_local_images_are_exit_2_with_zero_requests(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    make: Callable[[Path], object],
    expected: str,
) -> None:
    """A text file named .png or an 8 MB image is refused before any request."""
    make(tmp_path / "in.png")
    manifest = write_manifest(
        [{"id": "x", "prompt": "p", "images": ["in.png"]}], endpoint=simulator.url
    )
    result = cli("run", str(manifest))
    assert result.exit_code == 2 and expected in result.stderr and "'x'" in result.stderr
    assert simulator.stats()["requests"] == 0


def test_fifteen_images_and_etc_passwd_are_refused(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """15 images on one item, and /etc/passwd as an image, are exit 2 with zero requests."""
    for n in range(15):
        (tmp_path / f"r{n}.png").write_bytes(png_bytes(4, 4))
    items = [
        {"id": "many", "prompt": "p", "images": [f"r{n}.png" for n in range(15)]},
        {"id": "passwd", "prompt": "q", "images": ["/etc/passwd"]},
    ]
    manifest = write_manifest(items, endpoint=simulator.url)
    result = cli("run", str(manifest))
    assert result.exit_code == 2
    assert "at most 14" in result.stderr and "/etc/passwd" in result.stderr
    assert simulator.stats()["requests"] == 0


def test_a_request_over_100_mb_after_base64_is_refused(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Eleven 6.9 MB images are each allowed, but together exceed 100 MB after base64: exit 2."""
    image = png_bytes(4, 4, padding=6_900_000)
    for n in range(11):
        (tmp_path / f"b{n}.png").write_bytes(image[:-20] + bytes([n]) + image[-19:])
    manifest = write_manifest(
        [{"id": "huge", "prompt": "p", "images": [f"b{n}.png" for n in range(11)]}],
        endpoint=simulator.url,
    )
    result = cli("run", str(manifest))
    assert result.exit_code == 2
    assert "100 MB" in result.stderr and "'huge'" in result.stderr
    assert simulator.stats()["requests"] == 0
