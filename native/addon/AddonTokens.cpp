// pasta-server: each token's raw bytes, as the vocabulary spells them, for exact character offsets
// (src/engine/tokenSpans.ts), and tokenization off the JavaScript thread. node-llama-cpp only
// returns detokenized JavaScript strings, which cannot show where a token ends inside a multi-byte
// character, and tokenizes on the calling thread, where a long prompt holds up every other request.
// Copied into node-llama-cpp/llama/addon/ by native/build.mjs; registered in AddonContext::init.
#include <algorithm>
#include <string>
#include <vector>

#include "AddonContext.h"
#include "AddonModel.h"
#include "common/common.h"
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

// Tokenizes on a libuv worker thread: llama.cpp's vocabulary is read-only once loaded, so this runs
// beside the generation loop's decodes as llama-server's HTTP threads do. The JavaScript side keeps
// the model until every promise settles (engine.ts), and the worker holds the context object.
class PastaTokenizeWorker : public Napi::AsyncWorker {
   public:
    PastaTokenizeWorker(Napi::Env env, AddonContext* context, std::string text, bool parseSpecial, llama_token prepend)
        : Napi::AsyncWorker(env, "PastaTokenizeWorker"),
          context(context),
          text(std::move(text)),
          parseSpecial(parseSpecial),
          prepend(prepend),
          deferred(Napi::Promise::Deferred::New(env)) {
        context->Ref();
    }
    ~PastaTokenizeWorker() { context->Unref(); }

    Napi::Promise GetPromise() { return deferred.Promise(); }

   protected:
    void Execute() override {
        try {
            // as node-llama-cpp's LlamaModel.tokenize: "" is no tokens, anything else common_tokenize without BOS
            if (!text.empty()) tokens = common_tokenize(llama_model_get_vocab(context->model->model), text, false, parseSpecial);
            if (prepend != LLAMA_TOKEN_NULL && (tokens.empty() || tokens[0] != prepend)) tokens.insert(tokens.begin(), prepend);
        } catch (const std::exception& e) {
            SetError(e.what());
        }
    }

    void OnOK() override {
        Napi::Uint32Array ids = Napi::Uint32Array::New(Env(), tokens.size());
        std::copy(tokens.begin(), tokens.end(), ids.Data());
        deferred.Resolve(ids);
    }

    void OnError(const Napi::Error& err) override { deferred.Reject(err.Value()); }

   private:
    AddonContext* context;
    std::string text;
    bool parseSpecial;
    llama_token prepend;
    std::vector<llama_token> tokens;
    Napi::Promise::Deferred deferred;
};

// tokenizeAsync(text: string, parseSpecial: boolean, prepend: number): Promise<Uint32Array>.
// `prepend` (-1: none) is put first unless the text's tokens start with it (a model's BOS).
Napi::Value AddonContext::TokenizeAsync(const Napi::CallbackInfo& info) {
    if (disposed || ctx == nullptr) {
        Napi::Error::New(info.Env(), "Context is disposed").ThrowAsJavaScriptException();
        return info.Env().Undefined();
    }
    const int32_t prepend = info[2].As<Napi::Number>().Int32Value();
    auto* worker = new PastaTokenizeWorker(info.Env(), this, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Boolean>().Value(),
                                           prepend < 0 ? LLAMA_TOKEN_NULL : (llama_token)prepend);
    worker->Queue();
    return worker->GetPromise();
}
