#!/usr/bin/env bash
# Developer tool: after editing the unpacked llama.cpp tree in node_modules, save our changes: our own
# files back into native/llama.cpp/, and the hooks in upstream's files (only ours: node-llama-cpp's own
# patches touch other files) into native/llama.cpp.patch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree="$here/../node_modules/node-llama-cpp/llama/llama.cpp"
for own in "$here"/llama.cpp/include/* "$here"/llama.cpp/src/*; do
  rel=${own#"$here/llama.cpp/"}
  cp "$tree/$rel" "$own"
done
hooked=(include/llama.h src/CMakeLists.txt src/llama-context.cpp src/llama-context.h src/llama-graph.cpp src/llama-graph.h
        src/llama-kv-cache.h)
git -C "$tree" diff -- "${hooked[@]}" > "$here/llama.cpp.patch"
echo "saved $(grep -c '^+[^+]' "$here/llama.cpp.patch") added lines in upstream files to native/llama.cpp.patch," \
  "$(cat "$here"/llama.cpp/include/* "$here"/llama.cpp/src/* | wc -l) lines of our own files in native/llama.cpp/"
