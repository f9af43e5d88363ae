#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the repository's own test inputs and examples.

Run from the repository root after changing the inputs it draws on; the seeds are
committed. Raw string literals (r#"..."#, br#"..."#) in the named test sources are
sorted by the format they parse as.
"""
import base64
import hashlib
import json
import pathlib
import re
import shutil
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"
RAW = re.compile(r'b?r(#+)"(.*?)"\1', re.S)
PLAIN = re.compile(r'(?<![r#\w])"((?:[^"\\]|\\.)*)"', re.S)
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}


def literals(*globs):
    for pattern in globs:
        for path in sorted(ROOT.glob(pattern)):
            source = path.read_text()
            for match in RAW.finditer(source):
                yield match.group(2)
            for match in PLAIN.finditer(RAW.sub("", source)):
                text = match.group(1)
                if "\n" in text or "\\n" in text:
                    yield re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(0)), text)


def is_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def is_toml(text):
    try:
        tomllib.loads(text)
        return True
    except (tomllib.TOMLDecodeError, ValueError):
        return False


def write(target, items):
    folder = SEEDS / target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main():
    sources = ("crates/*/src/**/*.rs", "crates/*/tests/**/*.rs")
    texts = sorted(set(literals(*sources)))

    messages = [t for t in texts if isinstance(is_json(t), dict) and "jsonrpc" in is_json(t)]
    messages += [
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}',
        '{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"fixture__echo","arguments":{"text":"hi"},"_meta":{"progressToken":7}}}',
        '{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"invalid cursor","data":{"k":[1,2.50,null]}}}',
        '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1e400}}',
        '[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
    ]
    write("jsonrpc", messages)
    # First byte: the chunking seed; the id anywhere in the object, answers with it last.
    answers = ['{"jsonrpc":"2.0","result":{"content":[{"type":"text","text":"x"}]},"id":7}',
               '{"jsonrpc":"2.0","result":{"id":1},"id":18446744073709551616}',
               '{"id":1e3,"x":{"id":2}}']
    write("idscan", [b"\x05" + m.encode() for m in messages + answers])

    schemas = [
        {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "nested": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
            "query": {"type": "string"}},
         "arguments": {"region": "us-west1", "nested": {"n": 42}}},
        {"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}}},
        {"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}},
        {"properties": {"a": {"type": "boolean", "x-mcp-header": "Flag"}}, "a": True},
    ]
    values = ["us-west1", "=?base64?SGVsbG8sIOS4lueVjA==?=", "=?base64?IHBhZGRlZCA=?=",
              "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?not base64?=", " padded "]
    write("headers", [json.dumps(s) for s in schemas] + values)

    names = ["time\tget_current_time\nfs\tread_file", "a\tdotted.name\na\tdotted_name\nb\t" + "x" * 80,
             "srv\ttool.1\nsrv\ttool_1\nsrv\t" + "z" * 70, "fixture\ttest://static-text",
             "switchboard://fixture/test://static-text"]
    write("naming", names)

    streams = [
        b": keep-alive\n\nevent: endpoint\ndata: /message?s=1\n\ndata: {\"a\":\ndata: 1}\r\n\r\n",
        b"id: e-1\nretry: 500\ndata: \n\nretry: soon\nid: e-2\n\n",
        b'event: message\nid: 0\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n',
    ]
    # First byte: the bound (< 128: small), second: the chunking seed.
    write("sse", [bytes([b, s]) + stream for stream in streams for b, s in ((7, 1), (200, 9))])

    lines = [
        b'{"a":1}\r\n\n{"id":7,' + b"x" * 100 + b'\n{"b":2}\n',
        b'{"jsonrpc":"2.0","id":1,"result":{}}\n   \n\t\r\n{"jsonrpc":"2.0","method":"n"}',
    ]
    # Bytes: the bound, the buffer capacity, the read-size seed.
    write("framing", [bytes([b, c, 3]) + line for line in lines for b, c in ((40, 7), (63, 63))])

    cursors = [base64.urlsafe_b64encode(f"sb:{n}".encode()).rstrip(b"=") for n in (0, 50, 1000)]
    cursors += [b"garbage", base64.urlsafe_b64encode(b"sb:-1000").rstrip(b"=")]
    write("cursor", cursors)

    examples = sorted((ROOT / "examples").iterdir())
    tomls = [p.read_text() for p in examples if p.suffix == ".toml"]
    tomls += [t for t in texts if re.search(r"^\[(servers|gateway|listen)", t, re.M) or (
        not t.lstrip().startswith("{") and "=" in t and is_toml(t))]
    write("config_toml", tomls)
    jsons = [p.read_text() for p in examples if p.suffix == ".json"]
    jsons += [t for t in texts if isinstance(is_json(t), dict) and "mcpServers" in is_json(t)]
    write("config_mcp_json", jsons)


if __name__ == "__main__":
    main()
