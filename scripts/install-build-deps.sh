#!/usr/bin/env bash
# Installs what building Duplex needs besides Rust: the fleet's etcd client
# (the etcd-client crate, fleet/) compiles etcd's gRPC API from its .proto
# files at build time with protoc, which needs Debian's protobuf-compiler and
# the well-known types of libprotobuf-dev (without them:
# `google/protobuf/descriptor.proto: File not found`). Nothing is installed
# when both are there.
set -euo pipefail

missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || missing+=(libprotobuf-dev)
if ((${#missing[@]})); then
    echo "install-build-deps: installing ${missing[*]}" >&2
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
