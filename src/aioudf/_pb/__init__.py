"""Generated protobuf code for Kapacitor's UDF schema (protos/udf.proto).

Never edit the files here by hand: run ``bash scripts/gen_proto.sh``.
"""
