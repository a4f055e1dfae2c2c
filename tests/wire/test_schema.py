"""protos/udf.proto, the committed generated code, and Kapacitor's wire contract agree.

The contract is docs/protocol.md; its tables are read here and must say what
CONTRACT and ENUMS say, so the page and the schema cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pb2 import DescriptorProto, FieldDescriptorProto

from aioudf._pb import udf_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "protos" / "udf.proto"
GENERATED = ROOT / "src" / "aioudf" / "_pb"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"

# The schema as docs/protocol.md's tables state it (Kapacitor's, unchanged since 1.0):
# message -> {field: (number, type)}; "map<k,v>", "repeated T", "oneof:T" spelled out.
CONTRACT: dict[str, dict[str, tuple[int, str]]] = {
    "InfoRequest": {},
    "InfoResponse": {
        "wants": (1, "EdgeType"),
        "provides": (2, "EdgeType"),
        "options": (3, "map<string,OptionInfo>"),
    },
    "OptionInfo": {"valueTypes": (1, "repeated ValueType")},
    "InitRequest": {
        "options": (1, "repeated Option"),
        "taskID": (2, "string"),
        "nodeID": (3, "string"),
    },
    "Option": {"name": (1, "string"), "values": (2, "repeated OptionValue")},
    "OptionValue": {
        "type": (1, "ValueType"),
        "boolValue": (2, "oneof:bool"),
        "intValue": (3, "oneof:int64"),
        "doubleValue": (4, "oneof:double"),
        "stringValue": (5, "oneof:string"),
        "durationValue": (6, "oneof:int64"),
    },
    "InitResponse": {"success": (1, "bool"), "error": (2, "string")},
    "SnapshotRequest": {},
    "SnapshotResponse": {"snapshot": (1, "bytes")},
    "RestoreRequest": {"snapshot": (1, "bytes")},
    "RestoreResponse": {"success": (1, "bool"), "error": (2, "string")},
    "KeepaliveRequest": {"time": (1, "int64")},
    "KeepaliveResponse": {"time": (1, "int64")},
    "ErrorResponse": {"error": (1, "string")},
    "BeginBatch": {
        "name": (1, "string"),
        "group": (2, "string"),
        "tags": (3, "map<string,string>"),
        "size": (4, "int64"),
        "byName": (5, "bool"),
    },
    "Point": {
        "time": (1, "int64"),
        "name": (2, "string"),
        "database": (3, "string"),
        "retentionPolicy": (4, "string"),
        "group": (5, "string"),
        "dimensions": (6, "repeated string"),
        "tags": (7, "map<string,string>"),
        "fieldsDouble": (8, "map<string,double>"),
        "fieldsInt": (9, "map<string,int64>"),
        "fieldsString": (10, "map<string,string>"),
        "byName": (11, "bool"),
        "fieldsBool": (12, "map<string,bool>"),
    },
    "EndBatch": {
        "name": (1, "string"),
        "group": (2, "string"),
        "tmax": (3, "int64"),
        "tags": (4, "map<string,string>"),
        "byName": (5, "bool"),
    },
    "Request": {
        "info": (1, "oneof:InfoRequest"),
        "init": (2, "oneof:InitRequest"),
        "keepalive": (3, "oneof:KeepaliveRequest"),
        "snapshot": (4, "oneof:SnapshotRequest"),
        "restore": (5, "oneof:RestoreRequest"),
        "begin": (16, "oneof:BeginBatch"),
        "point": (17, "oneof:Point"),
        "end": (18, "oneof:EndBatch"),
    },
    "Response": {
        "info": (1, "oneof:InfoResponse"),
        "init": (2, "oneof:InitResponse"),
        "keepalive": (3, "oneof:KeepaliveResponse"),
        "snapshot": (4, "oneof:SnapshotResponse"),
        "restore": (5, "oneof:RestoreResponse"),
        "error": (6, "oneof:ErrorResponse"),
        "begin": (16, "oneof:BeginBatch"),
        "point": (17, "oneof:Point"),
        "end": (18, "oneof:EndBatch"),
    },
}
ENUMS = {
    "EdgeType": {"STREAM": 0, "BATCH": 1},
    "ValueType": {"BOOL": 0, "INT": 1, "DOUBLE": 2, "STRING": 3, "DURATION": 4},
}

_SCALARS = {
    FieldDescriptorProto.TYPE_BOOL: "bool",
    FieldDescriptorProto.TYPE_INT64: "int64",
    FieldDescriptorProto.TYPE_DOUBLE: "double",
    FieldDescriptorProto.TYPE_STRING: "string",
    FieldDescriptorProto.TYPE_BYTES: "bytes",
}

# The committed module's schema, read through the stable descriptor_pb2 API.
COMMITTED = descriptor_pb2.FileDescriptorProto.FromString(udf_pb2.DESCRIPTOR.serialized_pb)
MESSAGES = {m.name: m for m in COMMITTED.message_type}


def _base(field: FieldDescriptorProto) -> str:
    if field.type in (FieldDescriptorProto.TYPE_MESSAGE, FieldDescriptorProto.TYPE_ENUM):
        return field.type_name.rsplit(".", 1)[-1]
    return _SCALARS[field.type]


def _spell(message: DescriptorProto, field: FieldDescriptorProto) -> str:
    """Spell a field's type the way CONTRACT does."""
    entries = {f".{COMMITTED.package}.{message.name}.{n.name}": n for n in message.nested_type}
    entry = entries.get(field.type_name)
    if entry is not None and entry.options.map_entry:
        key, value = entry.field
        return f"map<{_base(key)},{_base(value)}>"
    if field.label == FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {_base(field)}"
    if field.HasField("oneof_index"):
        return f"oneof:{_base(field)}"
    return _base(field)


def _without_json_names(proto: descriptor_pb2.FileDescriptorProto) -> None:
    """protoc's descriptor sets carry json_name; the embedded descriptor does not."""

    def strip(message: DescriptorProto) -> None:
        for field in message.field:
            field.ClearField("json_name")
        for nested in message.nested_type:
            strip(nested)

    for message in proto.message_type:
        strip(message)


def test_package_is_agent() -> None:
    assert COMMITTED.package == "agent"
    assert COMMITTED.syntax == "proto3"


@pytest.mark.parametrize("message", sorted(CONTRACT))
def test_messages_match_the_wire_contract(message: str) -> None:
    descriptor = MESSAGES[message]
    actual = {f.name: (f.number, _spell(descriptor, f)) for f in descriptor.field}
    assert actual == CONTRACT[message]


def test_no_message_beyond_the_contract() -> None:
    assert set(MESSAGES) == set(CONTRACT)


@pytest.mark.parametrize("enum", sorted(ENUMS))
def test_enums_match_the_wire_contract(enum: str) -> None:
    (descriptor,) = [e for e in COMMITTED.enum_type if e.name == enum]
    assert {v.name: v.number for v in descriptor.value} == ENUMS[enum]


def test_oneofs_are_named_as_kapacitor_names_them() -> None:
    names = {
        m: [o.name for o in MESSAGES[m].oneof_decl] for m in ("Request", "Response", "OptionValue")
    }
    assert names == {"Request": ["message"], "Response": ["message"], "OptionValue": ["value"]}


def test_committed_code_matches_the_proto_file(tmp_path: Path) -> None:
    """Compile protos/udf.proto now and compare with the committed descriptor."""
    pytest.importorskip("grpc_tools")
    out = tmp_path / "udf.desc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={PROTO.parent}",
            f"--descriptor_set_out={out}",
            PROTO.name,
        ],
        check=True,
    )
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _without_json_names(compiled)
    assert compiled == COMMITTED, (
        "src/aioudf/_pb is out of date with protos/udf.proto: run bash scripts/gen_proto.sh"
    )


def test_type_stubs_cover_every_message_and_field() -> None:
    stub = ast.parse((GENERATED / "udf_pb2.pyi").read_text())
    classes = {node.name: node for node in stub.body if isinstance(node, ast.ClassDef)}
    for message, fields in CONTRACT.items():
        assert message in classes, f"udf_pb2.pyi lacks {message}"
        declared = {
            getattr(node.target, "id", None)
            for node in ast.walk(classes[message])
            if isinstance(node, ast.AnnAssign)
        } | {node.name for node in classes[message].body if isinstance(node, ast.FunctionDef)}
        missing = set(fields) - declared
        assert not missing, f"udf_pb2.pyi: {message} lacks {sorted(missing)}"


def test_request_and_response_point_frames_are_byte_identical() -> None:
    point = udf_pb2.Point(name="cpu", time=5, fieldsDouble={"v": 1.5})
    assert (
        udf_pb2.Request(point=point).SerializeToString()
        == udf_pb2.Response(point=point).SerializeToString()
    )


# ---- docs/protocol.md says the same ---------------------------------------------


def _table_rows(text: str) -> list[list[str]]:
    """The cells of every table row of a markdown page (header rules left out)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _documented_fields(cell: str) -> dict[str, tuple[int, str]]:
    """``1 `wants` EdgeType, 2 `options` map<string, OptionInfo>`` as CONTRACT spells it."""
    plain, _, oneof = cell.partition("then one of:")
    fields = {}
    for part, prefix in ((plain, ""), (oneof, "oneof:")):
        for m in re.finditer(r"(\d+) `(\w+)` (.+?)(?=, \d+ `|,\s*$|$)", part.strip()):
            spelled = re.sub(r"\s*\(.*?\)", "", m.group(3)).replace(", ", ",").strip()
            fields[m.group(2)] = (int(m.group(1)), prefix + spelled)
    return fields


def _documented_schema() -> tuple[dict[str, dict[str, tuple[int, str]]], dict[str, dict[str, int]]]:
    messages: dict[str, dict[str, tuple[int, str]]] = {"Request": {}, "Response": {}}
    enums: dict[str, dict[str, int]] = {}
    for cells in _table_rows(PROTOCOL_MD.read_text()):
        if len(cells) == 3 and cells[0].isdigit():  # the wrappers' oneof
            for wrapper, cell in zip(("Request", "Response"), cells[1:], strict=True):
                m = re.fullmatch(r"`(\w+)`: (\w+)", cell)
                if m:
                    messages[wrapper][m.group(1)] = (int(cells[0]), f"oneof:{m.group(2)}")
        elif len(cells) == 2 and cells[0].strip("`") in ENUMS:
            values = re.findall(r"`(\w+)` = (\d+)", cells[1])
            enums[cells[0].strip("`")] = {name: int(number) for name, number in values}
        elif len(cells) == 2 and cells[0] in CONTRACT:
            messages[cells[0]] = _documented_fields(cells[1]) if cells[1] != "none" else {}
    return messages, enums


def test_the_protocol_page_states_the_contract() -> None:
    messages, enums = _documented_schema()
    assert messages == CONTRACT
    assert enums == ENUMS
