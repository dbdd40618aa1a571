#!/usr/bin/env bash
# Developer tool: after editing the unpacked llama.cpp tree in node_modules, save our changes
# (and only ours: node-llama-cpp's own patches touch other files) into native/llama.cpp.patch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree="$here/../node_modules/node-llama-cpp/llama/llama.cpp"
files=(include/llama.h src/llama-context.cpp src/llama-context.h src/llama-graph.cpp src/llama-graph.h
       src/llama-kv-cache.cpp src/llama-kv-cache.h src/llama-steering.h)
git -C "$tree" add -N src/llama-steering.h
git -C "$tree" diff -- "${files[@]}" > "$here/llama.cpp.patch"
git -C "$tree" reset -q src/llama-steering.h
echo "saved $(grep -c '^+' "$here/llama.cpp.patch") added lines to native/llama.cpp.patch"
