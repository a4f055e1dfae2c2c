#!/usr/bin/env bash
# Regenerate src/aioudf/_pb/udf_pb2.py and udf_pb2.pyi from protos/udf.proto.
#
#     bash scripts/gen_proto.sh
#
# The generator is pinned on purpose: protoc 25 (grpcio-tools 1.62) emits code
# without the runtime-version guard that protoc >= 26 adds, so the committed
# module imports on every protobuf runtime from 4.21 up to today's. That keeps
# aioudf embeddable in services that pin an older protobuf. The pinned tools live
# in their own virtual environment (.venv-codegen) so they never fight with the
# protobuf version of the development environment.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-codegen
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet "grpcio-tools==1.62.3" "mypy-protobuf==3.6.0"
fi

out=src/aioudf/_pb
"$venv/bin/python" -m grpc_tools.protoc \
    --proto_path=protos \
    --python_out="$out" \
    --mypy_out="$out" \
    --plugin=protoc-gen-mypy="$venv/bin/protoc-gen-mypy" \
    protos/udf.proto
echo "generated $out/udf_pb2.py and $out/udf_pb2.pyi from protos/udf.proto"
