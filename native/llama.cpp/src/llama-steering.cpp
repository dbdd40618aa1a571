// Attention steering (PASTA) for llama_context: the methods that keep each sequence's steering
// (llama-steering.h), the worst case that sched_reserve reserves, the diagnostics decode collects,
// and the C API (llama.h). pasta-server's own file: upstream's llama-context.cpp only calls in.

#include "llama-context.h"
#include "llama-graph.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-kv-cache-iswa.h"
#include "llama-arch.h"
#include "llama-model.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

int32_t llama_context::steering_n_head_max() const {
    uint32_t n = 0;
    for (uint32_t il = 0; il < model.hparams.n_layer(); ++il) {
        n = std::max(n, model.hparams.n_head(il));
    }
    return (int32_t) n;
}

const char * llama_context::steering_unsupported_reason() const {
    if (const char * reason = steering_memory_unsupported_reason()) {
        return reason;
    }
    // found once, at the first reserve: a layer whose attention the worst-case graph did not steer
    return steering_unhooked.empty() ? nullptr : steering_unhooked.c_str();
}

const char * llama_context::steering_memory_unsupported_reason() const {
    // the bias is added where the KV-cache attention paths call build_attn_mha; recurrent, hybrid,
    // cache-less (encoder) and MLA models attend elsewhere
    if (!memory) {
        return "this model has no KV cache (encoder or embedding model); attention steering needs causal KV-cache attention";
    }
    if (!dynamic_cast<const llama_kv_cache *>(memory.get()) && !dynamic_cast<const llama_kv_cache_iswa *>(memory.get())) {
        return "this architecture uses recurrent or hybrid memory; attention steering supports standard, grouped-query and sliding-window KV-cache attention only";
    }
    if (model.hparams.is_mla()) {
        return "this architecture uses multi-head latent attention (MLA), which attention steering does not support";
    }
    return nullptr;
}

bool llama_context::steering_shift_invariant() const {
    // softmax ignores a bias added to every score of a row, unless a row also has a sink logit
    // (a learned per-head score that no KV position carries, and so that no bias reaches)
    for (uint32_t il = 0; il < model.hparams.n_layer(); ++il) {
        if (model.layers[il].attn_sinks != nullptr) {
            return false;
        }
    }
    return true;
}

std::unique_ptr<llama_steering_swap> llama_context::steering_reserve_worst_case() {
    // the worst case includes attention steering on every layer, so that no mix of steered and
    // unsteered sequences needs more compute memory than reserved: decode never rebuilds the
    // scheduler for steering (which would synchronise and stall every sequence)
    if (steering_unsupported_reason() != nullptr) {
        return nullptr;
    }
    return std::make_unique<llama_steering_swap>(steering.active, steering_worst_case());
}

bool llama_context::steering_refuse_unhooked(std::unique_ptr<llama_steering_swap> & worst, const llm_graph_result & reserved) {
    // decided once per context: steering is refused unless every layer's attention took the bias
    const int32_t n_layer = (int32_t) model.hparams.n_layer();
    if (!worst || reserved.steer_out.n_steered_layers == n_layer) {
        return false;
    }
    steering_unhooked = "this architecture (" + std::string(llm_arch_name(model.arch)) + ") computes attention in " +
        std::to_string(n_layer - reserved.steer_out.n_steered_layers) + " of " + std::to_string(n_layer) +
        " layers on a path that attention steering does not hook";
    worst.reset(); // nothing will be steered
    return true;
}

bool llama_context::steering_reached_every_layer(const llm_graph_params & params, const llm_graph_result & res) const {
    // every steered layer must have received the bias
    const llama_steering_state * steer = params.steer.state;
    if (steer && steer->active() && res.steer_out.n_steered_layers != steer->n_layers()) {
        LLAMA_LOG_ERROR("%s: attention steering reached %d of %d steered layers: this architecture's attention path is not supported\n",
                __func__, res.steer_out.n_steered_layers, steer->n_layers());
        return false;
    }
    return true;
}

llama_steering_graph_key llama_context::steering_graph_key() const {
    const llama_steering_state & active = steering.active;
    return { &active, active.active() ? active.layers : std::vector<uint8_t>{}, active.diagnostics, active.active() && active.target_share };
}

llama_steering_state llama_context::steering_worst_case() const {
    const int32_t n_layer    = (int32_t) model.hparams.n_layer();
    const int32_t n_head_max = steering_n_head_max();
    llama_steering_state state;
    llama_steering_seq all;
    all.head_mask.assign((size_t) n_layer*n_head_max, 1);
    state.seqs[0] = std::move(all);
    state.update_layers(n_layer, n_head_max);
    return state;
}

int32_t llama_context::steering_set(llama_seq_id seq_id, float bias, const int32_t * ranges, int32_t n_ranges, const uint8_t * head_mask, int32_t n_head_mask) {
    if (steering_unsupported_reason() != nullptr) {
        return -2;
    }
    const int32_t n_layer    = (int32_t) model.hparams.n_layer();
    const int32_t n_head_max = steering_n_head_max();
    const uint32_t n_seq     = cparams.kv_unified ? LLAMA_MAX_SEQ : cparams.n_seq_max;
    if (seq_id < 0 || (uint32_t) seq_id >= n_seq || !std::isfinite(bias) || n_ranges < 0 ||
        (n_ranges > 0 && ranges == nullptr) || head_mask == nullptr || n_head_mask != n_layer*n_head_max) {
        return -1;
    }

    llama_steering_seq s;
    s.bias = bias;
    for (int32_t i = 0; i < n_ranges; ++i) {
        const llama_pos p0 = ranges[2*i], p1 = ranges[2*i + 1];
        if (p0 < 0 || p1 < p0 || (!s.ranges.empty() && p0 < s.ranges.back().second)) {
            return -1;
        }
        if (p1 > p0) {
            s.ranges.emplace_back(p0, p1);
        }
    }
    for (int32_t il = 0; il < n_layer; ++il) {
        for (int32_t h = (int32_t) model.hparams.n_head(il); h < n_head_max; ++h) {
            if (head_mask[(size_t) il*n_head_max + h]) {
                return -1; // head does not exist in this layer
            }
        }
    }
    s.head_mask.assign(head_mask, head_mask + n_head_mask);

    {
        std::lock_guard<std::mutex> lock(steering.diag_mutex);
        steering.diag_rows.erase(seq_id); // a new configuration: what the old one recorded is gone
    }
    std::lock_guard<std::mutex> lock(steering.mutex);
    steering.pending.seqs[seq_id] = std::move(s);
    steering.dirty = true;
    return 0;
}

void llama_context::steering_clear(llama_seq_id seq_id) {
    {
        std::lock_guard<std::mutex> lock(steering.diag_mutex);
        if (seq_id < 0) {
            steering.diag_rows.clear();
        } else {
            steering.diag_rows.erase(seq_id);
        }
    }
    std::lock_guard<std::mutex> lock(steering.mutex);
    if (seq_id < 0) {
        steering.pending.seqs.clear();
    } else {
        steering.pending.seqs.erase(seq_id);
    }
    steering.dirty = true;
}

// n_ranges [start, end) pairs, sorted and disjoint; false when they are not
static bool steering_parse_ranges(const int32_t * ranges, int32_t n_ranges, llama_pos_ranges & out) {
    if (n_ranges < 0 || (n_ranges > 0 && ranges == nullptr)) {
        return false;
    }
    for (int32_t i = 0; i < n_ranges; ++i) {
        const llama_pos p0 = ranges[2*i], p1 = ranges[2*i + 1];
        if (p0 < 0 || p1 < p0 || (!out.empty() && p0 < out.back().second)) {
            return false;
        }
        if (p1 > p0) {
            out.emplace_back(p0, p1);
        }
    }
    return true;
}

int32_t llama_context::steering_set_diagnostics(llama_seq_id seq_id, const int32_t * ranges, int32_t n_ranges) {
    llama_pos_ranges emphasis;
    if (!steering_parse_ranges(ranges, n_ranges, emphasis)) {
        return -1;
    }

    std::lock_guard<std::mutex> lock(steering.mutex);
    auto it = steering.pending.seqs.find(seq_id);
    if (it == steering.pending.seqs.end()) {
        return -1;
    }
    it->second.diagnostics = true;
    it->second.emphasis = std::move(emphasis);
    steering.dirty = true;
    return 0;
}

int32_t llama_context::steering_set_target_share(llama_seq_id seq_id, float share, const int32_t * ranges, int32_t n_ranges) {
    llama_pos_ranges emphasis;
    if (!(share > 0.0f && share < 1.0f) || !steering_parse_ranges(ranges, n_ranges, emphasis)) {
        return -1;
    }

    std::lock_guard<std::mutex> lock(steering.mutex);
    auto it = steering.pending.seqs.find(seq_id);
    if (it == steering.pending.seqs.end() || !(it->second.bias < 0.0f)) {
        return -1;
    }
    it->second.target_share = share;
    it->second.emphasis = std::move(emphasis);
    steering.dirty = true;
    return 0;
}

int32_t llama_context::steering_take_diagnostics(llama_seq_id seq_id, float * out, int32_t n_rows_max) {
    const size_t stride = (size_t) model.hparams.n_layer()*steering_n_head_max()*2;
    std::vector<float> rows;
    {
        std::lock_guard<std::mutex> lock(steering.diag_mutex);
        auto it = steering.diag_rows.find(seq_id);
        if (it == steering.diag_rows.end()) {
            return 0;
        }
        rows.swap(it->second);
        steering.diag_rows.erase(it);
    }
    const int32_t n_rows = (int32_t) (rows.size()/stride);
    if (out != nullptr && n_rows_max > 0) {
        std::copy_n(rows.begin(), (size_t) std::min(n_rows, n_rows_max)*stride, out);
    }
    return n_rows;
}

void llama_context::steering_collect_diagnostics(const llama_ubatch & ubatch, const llm_graph_result & res) {
    if (!steering.active.diagnostics) {
        return;
    }
    const int32_t n_head_max = steering_n_head_max();
    const size_t  stride     = (size_t) model.hparams.n_layer()*n_head_max*2;

    // the outputs of this ubatch's graph, on the host (diagnostics are rare: a synchronous copy is fine)
    ggml_backend_sched_synchronize(sched.get());
    const auto & diag = res.steer_out.diag;
    std::vector<std::vector<float>> on_steered(diag.size()), on_unsteered(diag.size());
    for (size_t d = 0; d < diag.size(); ++d) {
        on_steered[d].resize(ggml_nelements(diag[d].steered));
        on_unsteered[d].resize(ggml_nelements(diag[d].unsteered));
        ggml_backend_tensor_get(diag[d].steered,   on_steered[d].data(),   0, ggml_nbytes(diag[d].steered));
        ggml_backend_tensor_get(diag[d].unsteered, on_unsteered[d].data(), 0, ggml_nbytes(diag[d].unsteered));
    }

    std::lock_guard<std::mutex> lock(steering.diag_mutex);
    for (uint32_t i = 0; i < ubatch.n_tokens; ++i) {
        const llama_seq_id seq_id = ubatch.seq_id[i][0];
        const llama_steering_seq * ss = steering.active.find(seq_id);
        if (!ubatch.output[i] || ss == nullptr || !ss->diagnostics) {
            continue;
        }
        auto & rows = steering.diag_rows[seq_id];
        const size_t at = rows.size();
        rows.resize(at + stride, NAN);
        for (size_t d = 0; d < diag.size(); ++d) {
            const ggml_tensor * t = diag[d].steered; // [1, n_tps, n_head, n_stream]
            const int64_t n_tps = t->ne[1], n_head = t->ne[2];
            const int64_t s = i / n_tps, ii = i % n_tps; // ubatch rows are stream-major (see the KQ mask)
            for (int64_t h = 0; h < n_head; ++h) {
                const size_t idx = ii + n_tps*(h + n_head*s);
                float * pair = rows.data() + at + ((size_t) diag[d].il*n_head_max + h)*2;
                pair[0] = on_steered[d][idx];
                pair[1] = on_unsteered[d][idx];
            }
        }
    }
}

void llama_context::steering_apply_pending() {
    std::lock_guard<std::mutex> lock(steering.mutex);
    if (!steering.dirty) {
        return;
    }
    steering.dirty = false;

    // the compute buffers were reserved with every layer steered (sched_reserve): a new set of
    // steered layers only builds another graph in them, it never rebuilds the scheduler
    steering.active.seqs = steering.pending.seqs;
    steering.active.update_layers((int32_t) model.hparams.n_layer(), steering_n_head_max());
}

// C API (include/llama.h)

int32_t llama_steering_set(
        llama_context * ctx,
         llama_seq_id   seq_id,
                float   bias,
        const int32_t * ranges,
              int32_t   n_ranges,
        const uint8_t * head_mask,
              int32_t   n_head_mask) {
    return ctx->steering_set(seq_id, bias, ranges, n_ranges, head_mask, n_head_mask);
}

void llama_steering_clear(llama_context * ctx, llama_seq_id seq_id) {
    ctx->steering_clear(seq_id);
}

int32_t llama_steering_n_head(const llama_context * ctx, int32_t il) {
    const auto & hparams = ctx->get_model().hparams;
    if (il < 0 || (uint32_t) il >= hparams.n_layer()) {
        return -1;
    }
    return (int32_t) hparams.n_head(il);
}

const char * llama_steering_unsupported_reason(const llama_context * ctx) {
    return ctx->steering_unsupported_reason();
}

bool llama_steering_shift_invariant(const llama_context * ctx) {
    return ctx->steering_shift_invariant();
}

int32_t llama_steering_set_diagnostics(llama_context * ctx, llama_seq_id seq_id, const int32_t * ranges, int32_t n_ranges) {
    return ctx->steering_set_diagnostics(seq_id, ranges, n_ranges);
}

int32_t llama_steering_set_target_share(llama_context * ctx, llama_seq_id seq_id, float share, const int32_t * emphasis, int32_t n_ranges) {
    return ctx->steering_set_target_share(seq_id, share, emphasis, n_ranges);
}

int32_t llama_steering_take_diagnostics(llama_context * ctx, llama_seq_id seq_id, float * out, int32_t n_rows_max) {
    return ctx->steering_take_diagnostics(seq_id, out, n_rows_max);
}
