// pasta-server: each token's raw bytes, as the vocabulary spells them, for exact character offsets
// (src/engine/tokenSpans.ts). node-llama-cpp only returns detokenized JavaScript strings, which
// cannot show where a token ends inside a multi-byte character.
// Copied into node-llama-cpp/llama/addon/ by native/build.mjs; registered in AddonContext::init.
#include <algorithm>
#include <vector>

#include "AddonContext.h"
#include "AddonModel.h"
#include "llama.h"

// tokenPieces(tokens: Uint32Array, special: boolean): {bytes: Uint8Array, ends: Uint32Array}: the
// pieces concatenated, and where each token's piece ends in them (no leading space stripped)
Napi::Value AddonContext::TokenPieces(const Napi::CallbackInfo& info) {
    if (disposed || ctx == nullptr) {
        Napi::Error::New(info.Env(), "Context is disposed").ThrowAsJavaScriptException();
        return info.Env().Undefined();
    }
    Napi::Uint32Array tokens = info[0].As<Napi::Uint32Array>();
    const bool special = info[1].As<Napi::Boolean>().Value();
    const llama_vocab* vocab = llama_model_get_vocab(model->model);
    const size_t n = tokens.ElementLength();

    std::vector<char> bytes;
    Napi::Uint32Array ends = Napi::Uint32Array::New(info.Env(), n);
    std::vector<char> piece(64);
    for (size_t i = 0; i < n; i++) {
        int32_t length = llama_token_to_piece(vocab, (llama_token)tokens[i], piece.data(), (int32_t)piece.size(), 0, special);
        if (length < 0) {
            piece.resize((size_t)-length);
            length = llama_token_to_piece(vocab, (llama_token)tokens[i], piece.data(), (int32_t)piece.size(), 0, special);
        }
        if (length > 0) bytes.insert(bytes.end(), piece.begin(), piece.begin() + length);
        ends[i] = (uint32_t)bytes.size();
    }
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), bytes.size());
    std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(out.Data()));
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("bytes", out);
    result.Set("ends", ends);
    return result;
}
