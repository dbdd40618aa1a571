// pasta-server: attention steering for node-llama-cpp's AddonContext, and the log-probability helper.
// Copied into node-llama-cpp/llama/addon/ by native/build.mjs; registered in AddonContext::init.
#include <algorithm>
#include <cmath>
#include <vector>

#include "AddonContext.h"
#include "PastaNative.h"
#include "llama-grammar.h"
#include "llama.h"

static bool ensureLive(const Napi::CallbackInfo& info, AddonContext* self) {
    if (self->disposed || self->ctx == nullptr) {
        Napi::Error::New(info.Env(), "Context is disposed").ThrowAsJavaScriptException();
        return false;
    }
    return true;
}

// steeringInfo(): {unsupportedReason: string | null, shiftInvariant: boolean, headsPerLayer: number[], vocabularySize: number}
Napi::Value AddonContext::SteeringInfo(const Napi::CallbackInfo& info) {
    if (!ensureLive(info, this)) return info.Env().Undefined();

    Napi::Object res = Napi::Object::New(info.Env());
    const char* reason = llama_steering_unsupported_reason(ctx);
    res.Set("unsupportedReason", reason ? Napi::String::New(info.Env(), reason) : info.Env().Null());
    res.Set("shiftInvariant", llama_steering_shift_invariant(ctx));

    const int32_t nLayer = llama_model_n_layer(model->model);
    Napi::Array heads = Napi::Array::New(info.Env(), nLayer);
    for (int32_t il = 0; il < nLayer; il++) {
        heads.Set(il, Napi::Number::New(info.Env(), llama_steering_n_head(ctx, il)));
    }
    res.Set("headsPerLayer", heads);
    res.Set("vocabularySize", llama_vocab_n_tokens(llama_model_get_vocab(model->model)));
    return res;
}

// steeringSet(sequenceId, bias, ranges: Int32Array [start, end, ...], headMask: Uint8Array): 0 | -1 | -2
Napi::Value AddonContext::SteeringSet(const Napi::CallbackInfo& info) {
    if (!ensureLive(info, this)) return info.Env().Undefined();

    const int32_t seqId = info[0].As<Napi::Number>().Int32Value();
    const float bias = info[1].As<Napi::Number>().FloatValue();
    Napi::Int32Array ranges = info[2].As<Napi::Int32Array>();
    Napi::Uint8Array headMask = info[3].As<Napi::Uint8Array>();

    const int32_t res = llama_steering_set(ctx, seqId, bias, ranges.Data(), (int32_t)(ranges.ElementLength() / 2),
                                           headMask.Data(), (int32_t)headMask.ElementLength());
    return Napi::Number::New(info.Env(), res);
}

// steeringDiagnostics(sequenceId, emphasis: Int32Array [start, end, ...]): 0 | -1. After steeringSet:
// the generation loop then reports attention shares on these positions (llama_steering_set_diagnostics)
Napi::Value AddonContext::SteeringDiagnostics(const Napi::CallbackInfo& info) {
    if (!ensureLive(info, this)) return info.Env().Undefined();

    const int32_t seqId = info[0].As<Napi::Number>().Int32Value();
    Napi::Int32Array ranges = info[1].As<Napi::Int32Array>();
    const int32_t res = llama_steering_set_diagnostics(ctx, seqId, ranges.Data(), (int32_t)(ranges.ElementLength() / 2));
    return Napi::Number::New(info.Env(), res);
}

// steeringTargetShare(sequenceId, share, emphasis: Int32Array [start, end, ...]): 0 | -1. After steeringSet:
// the bias is then chosen per head and row so that these positions get `share` (llama_steering_set_target_share)
Napi::Value AddonContext::SteeringTargetShare(const Napi::CallbackInfo& info) {
    if (!ensureLive(info, this)) return info.Env().Undefined();

    const int32_t seqId = info[0].As<Napi::Number>().Int32Value();
    const float share = info[1].As<Napi::Number>().FloatValue();
    Napi::Int32Array ranges = info[2].As<Napi::Int32Array>();
    const int32_t res = llama_steering_set_target_share(ctx, seqId, share, ranges.Data(), (int32_t)(ranges.ElementLength() / 2));
    return Napi::Number::New(info.Env(), res);
}

// grammarError(text): what llama.cpp's GBNF parser finds wrong with text (the parse error, an undefined
// rule, no root rule), or null. llama_grammar_parser::parse prints the whole grammar to stderr on an
// error, and a client's grammar must not reach the log: this runs the same steps, printing nothing.
Napi::Value AddonContext::GrammarError(const Napi::CallbackInfo& info) {
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    llama_grammar_parser parser;
    try {
        const char* pos = text.c_str();
        const auto skipSpace = [&pos]() {  // parse_space(src, true), which llama-grammar.cpp keeps static
            while (*pos == ' ' || *pos == '\t' || *pos == '\r' || *pos == '\n' || *pos == '#') {
                if (*pos == '#') {
                    while (*pos && *pos != '\r' && *pos != '\n') pos++;
                } else {
                    pos++;
                }
            }
        };
        skipSpace();
        while (*pos) pos = parser.parse_rule(pos);
        for (const auto& [name, id] : parser.symbol_ids) {
            if (id >= parser.rules.size() || parser.rules[id].empty()) throw std::runtime_error("Undefined rule identifier '" + name + "'");
        }
        if (parser.symbol_ids.find("root") == parser.symbol_ids.end()) throw std::runtime_error("the grammar has no root rule");
    } catch (const std::exception& err) {
        return Napi::String::New(info.Env(), err.what());
    }
    return info.Env().Null();
}

// steeringClear(sequenceId): sequenceId < 0 clears every sequence
Napi::Value AddonContext::SteeringClear(const Napi::CallbackInfo& info) {
    if (!ensureLive(info, this)) return info.Env().Undefined();

    llama_steering_clear(ctx, info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
}

// See PastaNative.h. Log-sum-exp in double precision over the whole vocabulary; only the top-k are sorted.
void pastaLogprobs(const float* logits, int32_t nVocab, int32_t topK, int32_t token, double* out) {
    float maxLogit = -INFINITY;
    for (int32_t i = 0; i < nVocab; i++) maxLogit = std::max(maxLogit, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < nVocab; i++) sum += std::exp((double)logits[i] - maxLogit);
    const double logZ = maxLogit + std::log(sum);

    out[0] = token >= 0 && token < nVocab ? (double)logits[token] - logZ : NAN;
    const int32_t k = std::min(std::max(topK, 0), nVocab);
    if (k == 0) return;
    std::vector<int32_t> ids(nVocab);
    for (int32_t i = 0; i < nVocab; i++) ids[i] = i;
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [logits](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int32_t i = 0; i < k; i++) {
        out[1 + i * 2] = ids[i];
        out[2 + i * 2] = (double)logits[ids[i]] - logZ;
    }
}
