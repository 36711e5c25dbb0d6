"""The record of an image's making in the forms it is written in (contract section 11): the
sidecar's JSON text, the XMP packet (JPEG, WebP and PNG) and the PNG `iTXt` chunks.

Pure functions of a record (a JSON-ready mapping); embedding.py puts them into image files.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

# The XMP namespace of the record. A URN, not a web address: no domain is claimed, and XMP
# readers need only a stable name (exiftool shows the property as XMP-batchbanana:Record).
XMP_NAMESPACE = "urn:batchbanana:xmp:1.0/"
XMP_PREFIX = "batchbanana"
PNG_KEYWORD = "batchbanana"  # the iTXt chunk whose text is the record's JSON
PNG_XMP_KEYWORD = "XML:com.adobe.xmp"  # where XMP lives in a PNG (the XMP specification, part 3)
# IPTC's term for media made by a generative model, read by image sites that label such media.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"  # fixed by the XMP specification
# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a pair alone: not encodable as UTF-8


def record_json(record: Mapping[str, Any], pretty: bool = True) -> str:
    """The record as JSON text: indented for a sidecar (with a final newline), one line inside
    an image. Non-ASCII text stays readable; a lone surrogate becomes U+FFFD."""
    if pretty:
        text = json.dumps(record, ensure_ascii=False, indent=2) + "\n"
    else:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return _SURROGATE.sub("\ufffd", text)


def _xml_text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def xmp_packet(record: Mapping[str, Any], describe: bool = True) -> bytes:
    """An XMP packet holding the record as JSON (`batchbanana:record`), beside the properties other
    tools show: the tool (`xmp:CreatorTool`), the prompt (`dc:description`, unless `describe`
    is False) and IPTC's digital source type for generated media."""
    version = record.get("batchbanana")
    prompt = record.get("prompt")
    properties = [
        f"   <xmp:CreatorTool>{_xml_text(f'batchbanana {version}')}</xmp:CreatorTool>",
        f"   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>",
    ]
    if describe and isinstance(prompt, str):
        properties.append(
            '   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
            f"{_xml_text(prompt)}</rdf:li></rdf:Alt></dc:description>"
        )
    # In JSON text such characters can only be inside strings, where an escape keeps them.
    as_json = _NOT_XML.sub(lambda match: f"\\u{ord(match.group()):04x}", record_json(record, False))
    properties.append(f"   <{XMP_PREFIX}:record>{escape(as_json)}</{XMP_PREFIX}:record>")
    lines = [
        f'<?xpacket begin="\ufeff" id="{_PACKET_ID}"?>',
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
        '  <rdf:Description rdf:about=""',
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"',
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"',
        f'    xmlns:{XMP_PREFIX}="{XMP_NAMESPACE}">',
        *properties,
        "  </rdf:Description>",
        " </rdf:RDF>",
        "</x:xmpmeta>",
        '<?xpacket end="w"?>',
    ]
    return "\n".join(lines).encode("utf-8")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC over type and data."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_itxt(keyword: str, text: str) -> bytes:
    """An uncompressed international text chunk (`iTXt`), no language tag."""
    # keyword, NUL, compression flag 0, method 0, empty language tag, NUL, empty translation, NUL
    data = keyword.encode("latin-1") + b"\x00" + b"\x00\x00" + b"\x00" + b"\x00" + text.encode()
    return png_chunk(b"iTXt", data)


def png_record_chunks(record: Mapping[str, Any]) -> bytes:
    """What a PNG gets: the record's JSON under the keyword `batchbanana` (read by Pillow as
    `image.text["batchbanana"]`), then the same record as XMP, as PNG carries XMP."""
    xmp = xmp_packet(record).decode("utf-8")
    return png_itxt(PNG_KEYWORD, record_json(record, pretty=False)) + png_itxt(PNG_XMP_KEYWORD, xmp)
