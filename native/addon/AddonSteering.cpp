// pasta-server: attention steering for node-llama-cpp's AddonContext, and the log-probability helper.
// Copied into node-llama-cpp/llama/addon/ by native/build.mjs; registered in AddonContext::init.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
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

// What advancing the stack [pos] to its next terminals makes in llama.cpp's grammar engine
// (llama_grammar_advance_stack's walk, static there, counting instead of building): `stacks`, how
// many parse stacks result (counting stops past `limit`), and `skips`, the most optional items
// skipped in a row on the way. Every stack costs each sampling step a pass over the candidates; a
// run of n optional items also leaves n stacks that each advance into up to n more, compared pairwise:
// 400 optional items in a row stall the whole generation loop for seconds per token.
struct PastaFanOut {
    size_t stacks = 0;
    int32_t skips = 0;
};

static bool pastaEndOfAlternative(const llama_grammar_element* pos) {
    return pos->type == LLAMA_GRETYPE_END || pos->type == LLAMA_GRETYPE_ALT;
}

// `visits` is what is left of the check's work budget (stacks visited), spent here.
static PastaFanOut pastaGrammarFanOut(const llama_grammar_rules& rules, const llama_grammar_element* pos, size_t limit, int64_t& visits) {
    using Stack = std::vector<const llama_grammar_element*>;
    std::vector<std::pair<Stack, int32_t>> todo{{Stack{pos}, 0}};
    std::set<Stack> seen;
    std::set<Stack> heads;
    PastaFanOut result;
    while (!todo.empty() && heads.size() <= limit && visits-- > 0) {
        auto [stack, skips] = std::move(todo.back());
        todo.pop_back();
        if (!seen.insert(stack).second) continue;
        result.skips = std::max(result.skips, skips);
        if (stack.empty() || stack.back()->type != LLAMA_GRETYPE_RULE_REF) {
            heads.insert(stack);
            continue;
        }
        const llama_grammar_element* top = stack.back();
        const llama_grammar_element* alt = rules[top->value].data();
        while (true) {
            Stack next(stack.begin(), stack.end() - 1);
            if (!pastaEndOfAlternative(top + 1)) next.push_back(top + 1);
            // an empty alternative: the reference is skipped, on to what follows it
            const bool empty = pastaEndOfAlternative(alt);
            if (!empty) next.push_back(alt);
            todo.emplace_back(std::move(next), skips + (empty ? 1 : 0));
            while (!pastaEndOfAlternative(alt)) alt++;
            if (alt->type != LLAMA_GRETYPE_ALT) break;
            alt++;
        }
    }
    result.stacks = heads.size();
    return result;
}

// What llama.cpp's GBNF parser finds wrong with text (the parse error, an undefined rule, no root
// rule), or "". llama_grammar_parser::parse prints the whole grammar to stderr on an error, and a
// client's grammar must not reach the log: this runs the same steps, printing nothing.
static std::string pastaParseQuietly(const std::string& text, llama_grammar_parser& parser) {
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
        return err.what();
    }
    return "";
}

// grammarCheck(text, fanOutLimit, optionalRunLimit, visitBudget): {error} when llama.cpp cannot parse
// the GBNF grammar; else {fanOut, fanOutRule, optionalRun, optionalRunRule, exhausted}: over every
// position of the grammar, the most parse stacks advancing from it makes and the most optional items
// skipped in a row, each with the rule holding that position. Checking stops once a limit is passed,
// or when `visitBudget` stacks have been visited (exhausted: the grammar is too large to check).
Napi::Value AddonContext::GrammarCheck(const Napi::CallbackInfo& info) {
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    const size_t limit = info[1].As<Napi::Number>().Uint32Value();
    const int32_t runLimit = info[2].As<Napi::Number>().Int32Value();
    int64_t visits = info[3].As<Napi::Number>().Int64Value();
    Napi::Object result = Napi::Object::New(info.Env());
    llama_grammar_parser parser;
    const std::string error = pastaParseQuietly(text, parser);
    if (!error.empty()) {
        result.Set("error", error);
        return result;
    }
    PastaFanOut most;
    uint32_t stacksRule = 0;
    uint32_t skipsRule = 0;
    const auto within = [&]() { return most.stacks <= limit && most.skips <= runLimit && visits > 0; };
    const auto count = [&](const llama_grammar_element* element, uint32_t rule) {
        const PastaFanOut fanOut = pastaGrammarFanOut(parser.rules, element, limit, visits);
        if (fanOut.stacks > most.stacks) {
            most.stacks = fanOut.stacks;
            stacksRule = rule;
        }
        if (fanOut.skips > most.skips) {
            most.skips = fanOut.skips;
            skipsRule = rule;
        }
    };
    // the start: llama_grammar_init advances a reference to root
    const uint32_t root = parser.symbol_ids.at("root");
    const llama_grammar_element start[] = {{LLAMA_GRETYPE_RULE_REF, root}, {LLAMA_GRETYPE_END, 0}};
    count(start, root);
    for (uint32_t rule = 0; rule < parser.rules.size() && within(); rule++) {
        // every element that begins a symbol can be a stack's top: a rule reference or a character set
        // (CHAR_ALT / CHAR_RNG_UPPER continue a set; END / ALT end an alternative)
        for (const llama_grammar_element* element = parser.rules[rule].data(); within(); element++) {
            const auto type = element->type;
            if (type == LLAMA_GRETYPE_END) break;
            if (type == LLAMA_GRETYPE_ALT || type == LLAMA_GRETYPE_CHAR_ALT || type == LLAMA_GRETYPE_CHAR_RNG_UPPER) continue;
            count(element, rule);
        }
    }
    const auto nameOf = [&parser](uint32_t rule) {
        for (const auto& [name, id] : parser.symbol_ids) {
            if (id == rule) return name;
        }
        return std::string();
    };
    result.Set("fanOut", (double)most.stacks);
    result.Set("fanOutRule", nameOf(stacksRule));
    result.Set("optionalRun", most.skips);
    result.Set("optionalRunRule", nameOf(skipsRule));
    result.Set("exhausted", most.stacks <= limit && most.skips <= runLimit && visits <= 0);
    return result;
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
