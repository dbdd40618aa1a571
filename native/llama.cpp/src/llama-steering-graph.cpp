// Attention steering (PASTA) in the graph: the steering inputs (per KV cache a bias shaped like its KQ
// mask, per steered layer a head gate), and what a steered layer adds to upstream's attention
// (build_attn_steer and the steps build_attn_mha calls). pasta-server's own file: upstream's
// llama-graph.cpp only calls in.

#include "llama-graph.h"

#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-kv-cache-iswa.h"
#include "llama-model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

llm_graph_input_steer::cache_bias & llm_graph_input_steer::get_bias(ggml_context * ctx0, cache_kind kind, const llama_kv_cache_context * mctx, const ggml_tensor * kq_mask) {
    for (auto & b : biases) {
        if (b.kind == kind) {
            return b;
        }
    }
    ggml_tensor * bias = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, kq_mask->ne[0], kq_mask->ne[1], 1, kq_mask->ne[3]);
    ggml_set_input(bias);
    ggml_set_name(bias, "attn_inp_steer_bias");
    biases.push_back({kind, mctx, bias, nullptr, nullptr});
    return biases.back();
}

ggml_tensor * llm_graph_input_steer::get_emphasis(ggml_context * ctx0, cache_bias & cache) {
    if (cache.emphasis == nullptr) {
        cache.emphasis = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, cache.bias->ne[0], cache.bias->ne[1], 1, cache.bias->ne[3]);
        ggml_set_input(cache.emphasis);
        ggml_set_name(cache.emphasis, "attn_inp_steer_emphasis");
    }
    return cache.emphasis;
}

const llm_graph_input_steer::target_rows & llm_graph_input_steer::get_target_rows(ggml_context * ctx0, int64_t n_tps, int64_t n_stream) {
    if (target.odds == nullptr) {
        target.odds = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, 1, n_tps, 1, n_stream);
        ggml_set_input(target.odds);
        ggml_set_name(target.odds, "attn_inp_steer_target_odds");
        target.floor = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, 1, n_tps, 1, n_stream);
        ggml_set_input(target.floor);
        ggml_set_name(target.floor, "attn_inp_steer_target_floor");
    }
    return target;
}

void llm_graph_input_steer::set_input(const llama_ubatch * ubatch) {
    if (target.odds && target.odds->buffer) {
        GGML_ASSERT(ggml_backend_buffer_is_host(target.odds->buffer) && ggml_backend_buffer_is_host(target.floor->buffer));
        float * odds  = (float *) target.odds->data;
        float * floor = (float *) target.floor->data;
        for (int64_t i = 0; i < ggml_nelements(target.odds); ++i) {
            const llama_steering_seq * ss = steer->find(ubatch->seq_id[i][0]);
            const bool on = ss && ss->targets();
            odds[i]  = on ? (1.0f - ss->target_share)/ss->target_share : 0.0f;
            floor[i] = on ? std::exp(ss->bias) : 1.0f;
        }
    }

    for (const auto & b : biases) {
        if (b.bias->buffer) {
            b.mctx->set_input_steer_bias(b.bias, ubatch, *steer);
        }
        if (b.emphasis && b.emphasis->buffer) {
            b.mctx->set_input_steer_bias(b.emphasis, ubatch, *steer, /*emphasis=*/ true);
        }
    }

    for (const auto & g : gates) {
        if (!g.gate->buffer) {
            continue;
        }
        GGML_ASSERT(ggml_backend_buffer_is_host(g.gate->buffer));

        const int64_t n_tps    = g.heads_first ? g.gate->ne[2] : g.gate->ne[1];
        const int64_t n_head   = g.heads_first ? g.gate->ne[1] : g.gate->ne[2];
        const int64_t n_stream = g.gate->ne[3];

        float * data = (float *) g.gate->data;
        for (int64_t s = 0; s < n_stream; ++s) {
            for (int64_t ii = 0; ii < n_tps; ++ii) {
                const llama_steering_seq * ss = steer->find(ubatch->seq_id[s*n_tps + ii][0]);
                for (int64_t h = 0; h < n_head; ++h) {
                    const bool on = ss && ss->head_mask[(size_t) g.il*steer->n_head_max + h] && ss->targets() == g.target;
                    const int64_t idx = g.heads_first ? h + n_head*(ii + n_tps*s) : ii + n_tps*(h + n_head*s);
                    data[idx] = on ? g.value : 0.0f;
                }
            }
        }
    }
}

bool llm_graph_input_steer::can_reuse(const llm_graph_params & params) {
    steer = params.steer.state;

    bool res = true;
    for (auto & b : biases) {
        switch (b.kind) {
            case KV:           b.mctx = static_cast<const llama_kv_cache_context *>(params.mctx); break;
            case KV_ISWA_BASE: b.mctx = static_cast<const llama_kv_cache_iswa_context *>(params.mctx)->get_base(); break;
            case KV_ISWA_SWA:  b.mctx = static_cast<const llama_kv_cache_iswa_context *>(params.mctx)->get_swa();  break;
        }
        res &= can_reuse_kq_mask(b.bias, b.mctx, params.ubatch, params.cparams);
        if (b.emphasis) {
            res &= can_reuse_kq_mask(b.emphasis, b.mctx, params.ubatch, params.cparams);
        }
    }
    return res;
}


llm_graph_context::steer_attn llm_graph_context::build_attn_steer(
         ggml_tensor * kq_mask,
         llm_graph_input_steer::cache_kind kind,
         const llama_kv_cache_context * mctx_cur,
         ggml_tensor *& kq_b,
               float   kq_scale,
                 int   il) const {
    // the model's own KQ bias (if any) keeps a layer off flash attention, as upstream decides
    steer_attn out = build_attn_steer_inputs(kq_mask, kind, mctx_cur, cparams.flash_attn && kq_b == nullptr, kq_scale, il);
    out.diag_kq_b_model = kq_b;
    if (out.kq_b) {
        kq_b = kq_b ? ggml_add(ctx0, kq_b, out.kq_b) : out.kq_b;
    }
    return out;
}

llm_graph_context::steer_attn llm_graph_context::build_attn_steer_inputs(
         ggml_tensor * kq_mask,
         llm_graph_input_steer::cache_kind kind,
         const llama_kv_cache_context * mctx_cur,
                bool   flash,
               float   kq_scale,
                 int   il) const {
    steer_attn out;
    if (steer == nullptr || !steer->active() || !steer->steers_layer(il)) {
        return out;
    }

    if (inp_steer == nullptr) {
        inp_steer = (llm_graph_input_steer *) res->add_input(std::make_unique<llm_graph_input_steer>(steer));
    }

    auto & cache = inp_steer->get_bias(ctx0, kind, mctx_cur, kq_mask);

    const int64_t n_kv     = cache.bias->ne[0];
    const int64_t n_tps    = cache.bias->ne[1];
    const int64_t n_stream = cache.bias->ne[3];
    const int64_t n_head_l = hparams.n_head(il);

    res->steer_out.n_steered_layers++;

    // the steering bias as a KQ bias: [n_kv, n_tps, 1, n_stream] -> [n_kv, n_tps, n_head, n_stream],
    // zero outside the steered heads; softmax multiplies the scores by kq_scale, so the gate divides by it
    auto build_kq_b = [&]() {
        ggml_tensor * gate = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, 1, n_tps, n_head_l, n_stream);
        ggml_set_input(gate);
        ggml_set_name(gate, "attn_inp_steer_gate");
        inp_steer->gates.push_back({il, false, 1.0f/kq_scale, gate});
        return ggml_mul(ctx0, ggml_repeat_4d(ctx0, cache.bias, n_kv, n_tps, n_head_l, n_stream), gate);
    };
    if (steer->diagnostics) {
        out.diag_emphasis = inp_steer->get_emphasis(ctx0, cache);
    }

    // target share: a bias per head and row (build_attn_target), which F32 attention takes
    if (steer->target_share) {
        const auto & rows = inp_steer->get_target_rows(ctx0, n_tps, n_stream);
        out.target_cells    = cache.bias;
        out.target_emphasis = inp_steer->get_emphasis(ctx0, cache);
        out.target_odds     = rows.odds;
        out.target_floor    = rows.floor;
        out.target_gate     = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, 1, n_tps, n_head_l, n_stream);
        ggml_set_input(out.target_gate);
        ggml_set_name(out.target_gate, "attn_inp_steer_target_gate");
        inp_steer->gates.push_back({il, false, 1.0f/kq_scale, out.target_gate, /*target=*/ true});
    }

    // ALiBi: flash attention multiplies the mask, and so a bias carried in it, by each head's slope;
    // the F32 path adds kq_b to the scores apart from the (slope-scaled) mask, so the bias lands exactly
    if (flash && hparams.f_max_alibi_bias == 0.0f) {
        if (cache.mask_biased == nullptr) {
            // the bias goes where the mask goes: after kq_scale and softcap, before softmax
            cache.mask_biased = ggml_add(ctx0, kq_mask, cache.bias);
            cb(cache.mask_biased, "kq_mask_steer", -1);
        }
        out.mask_biased = cache.mask_biased;
        out.gate = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, 1, n_head_l, n_tps, n_stream);
        ggml_set_input(out.gate);
        ggml_set_name(out.gate, "attn_inp_steer_gate");
        inp_steer->gates.push_back({il, true, 1.0f, out.gate});
        if (out.target_gate) {
            // the target-share rows take their steered heads' output from F32 attention (build_attn_mha)
            out.target_merge = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, 1, n_head_l, n_tps, n_stream);
            ggml_set_input(out.target_merge);
            ggml_set_name(out.target_merge, "attn_inp_steer_target_merge");
            inp_steer->gates.push_back({il, true, 1.0f, out.target_merge, /*target=*/ true});
        }
        if (out.diag_emphasis) {
            out.diag_kq_b = build_kq_b();
        }
        return out;
    }

    out.kq_b = build_kq_b();
    cb(out.kq_b, "kq_steer", il);
    out.diag_kq_b = out.kq_b;
    return out;
}

ggml_tensor * llm_graph_context::build_attn_scores(
         ggml_tensor * q,
         ggml_tensor * k,
         ggml_tensor * kq_b,
                 int   il) const {
    // upstream's F32 attention scores, moved here from build_attn_mha unchanged (which calls this), so
    // that the diagnostics and target share compute exactly what that path computes
    ggml_tensor * kq = ggml_mul_mat(ctx0, k, q);
    cb(kq, "kq", il);

    // note: this op tends to require high floating point range
    //       while for some models F16 is enough, for others it is not, so we default to F32 here
    ggml_mul_mat_set_prec(kq, GGML_PREC_F32);

    if (arch == LLM_ARCH_GROK) {
        // need to do the following:
        // multiply by attn_output_multiplier
        // and then :
        // kq = 30 * tanh(kq / 30)
        // before the softmax below

        kq = ggml_tanh(ctx0, ggml_scale(ctx0, kq, hparams.f_attn_out_scale / hparams.f_attn_logit_softcapping));
        cb(kq, "kq_tanh", il);
        kq = ggml_scale(ctx0, kq, hparams.f_attn_logit_softcapping);
        cb(kq, "kq_scaled", il);
    }

    if (hparams.attn_soft_cap) {
        kq = ggml_scale(ctx0, kq, 1.0f / hparams.f_attn_logit_softcapping);
        cb(kq, "kq_scaled_1", il);
        kq = ggml_tanh (ctx0, kq);
        cb(kq, "kq_tanh", il);
        kq = ggml_scale(ctx0, kq, hparams.f_attn_logit_softcapping);
        cb(kq, "kq_scaled_2", il);
    }

    if (kq_b) {
        kq = ggml_add(ctx0, kq, kq_b);
        cb(kq, "kq_plus_kq_b", il);
    }

    return kq;
}

ggml_tensor * llm_graph_context::build_attn_f32(
         ggml_tensor * q,
         ggml_tensor * k,
         ggml_tensor * v,
         ggml_tensor * kq_b,
         ggml_tensor * kq_mask,
         ggml_tensor * sinks,
                bool   v_trans,
               float   kq_scale) const {
    ggml_tensor * kq = ggml_soft_max_ext(ctx0, build_attn_scores(q, k, kq_b), kq_mask, kq_scale, hparams.f_max_alibi_bias);
    ggml_soft_max_add_sinks(kq, sinks);

    if (!v_trans) {
        v = ggml_cont(ctx0, ggml_transpose(ctx0, v));
    }
    // [n_embd_head_v, n_tps, n_head, n_stream] -> as flash attention has it: [n_embd_head_v, n_head, n_tps, n_stream]
    return ggml_cont(ctx0, ggml_permute(ctx0, ggml_mul_mat(ctx0, v, kq), 0, 2, 1, 3));
}

ggml_tensor * llm_graph_context::build_attn_target(
         ggml_tensor * q,
         ggml_tensor * k,
         ggml_tensor * kq_mask,
         ggml_tensor * sinks,
  const steer_attn & steered,
               float   kq_scale,
                 int   il) const {
    // With the unsteered attention of a head and row putting share E on the emphasized cells, B on the
    // biased ones and G on what no bias reaches (generated tokens, a sink), scaling the biased cells'
    // weight by a gives the emphasis E / (E + a*B + G), which is the target t at a = (E*(1-t)/t - G)/B
    // (G summed from its own cells, not 1 - E - B: in float, 1 - E - B loses a small E entirely). a is
    // kept in [floor, 1]: no bias where the emphasis has t already, and never more than the sequence's
    // own bias log(floor); the bias is log(a) on the biased cells.
    ggml_tensor * p = ggml_soft_max_ext(ctx0, build_attn_scores(q, k, steered.diag_kq_b_model), kq_mask, kq_scale, hparams.f_max_alibi_bias);
    ggml_soft_max_add_sinks(p, sinks);

    ggml_tensor * cells = ggml_step(ctx0, steered.target_cells); // rows of other sequences hold log(alpha) < 0 there
    ggml_tensor * other = ggml_scale_bias(ctx0, ggml_add(ctx0, steered.target_emphasis, cells), -1.0f, 1.0f);
    ggml_tensor * E = ggml_sum_rows(ctx0, ggml_mul(ctx0, p, steered.target_emphasis));
    ggml_tensor * B = ggml_sum_rows(ctx0, ggml_mul(ctx0, p, cells));
    ggml_tensor * G = ggml_sum_rows(ctx0, ggml_mul(ctx0, p, other)); // masked cells have p = 0
    if (sinks) {
        G = ggml_add(ctx0, G, ggml_scale_bias(ctx0, ggml_sum_rows(ctx0, p), -1.0f, 1.0f)); // the sink's share
    }

    ggml_tensor * a = ggml_div(ctx0,
            ggml_sub(ctx0, ggml_mul(ctx0, E, steered.target_odds), G),
            ggml_scale_bias(ctx0, B, 1.0f, 1e-30f)); // no weight on the biased cells: a is 0 or huge, then clamped
    a = ggml_clamp(ctx0, a, 0.0f, 1.0f);
    a = ggml_add(ctx0, ggml_relu(ctx0, ggml_sub(ctx0, a, steered.target_floor)), steered.target_floor); // max(a, floor)

    // [1, n_tps, n_head, n_stream], 0 outside the target-share rows' steered heads
    ggml_tensor * log_a = ggml_mul(ctx0, ggml_log(ctx0, a), steered.target_gate);
    cb(log_a, "kq_steer_target", il);
    return ggml_mul(ctx0, ggml_repeat_4d(ctx0, cells, p->ne[0], p->ne[1], p->ne[2], p->ne[3]), log_a);
}

void llm_graph_context::build_attn_diag(
         ggml_tensor * q,
         ggml_tensor * k,
         ggml_tensor * kq_mask,
         ggml_tensor * sinks,
  const steer_attn & steered,
               float   kq_scale,
                 int   il) const {
    ggml_tensor * kq = build_attn_scores(q, k, steered.diag_kq_b_model);

    // softmax over the KV cells (sinks included), then the mass on the emphasized cells:
    // [n_kv, n_tps, n_head, n_stream] -> [1, n_tps, n_head, n_stream]
    auto share = [&](ggml_tensor * scores, const char * name) {
        ggml_tensor * p = ggml_soft_max_ext(ctx0, scores, kq_mask, kq_scale, hparams.f_max_alibi_bias);
        ggml_soft_max_add_sinks(p, sinks);
        ggml_tensor * on = ggml_sum_rows(ctx0, ggml_mul(ctx0, p, steered.diag_emphasis));
        cb(on, name, il);
        ggml_set_output(on);
        ggml_build_forward_expand(gf, on);
        return on;
    };
    ggml_tensor * on_steered   = share(ggml_add(ctx0, kq, steered.diag_kq_b), "attn_diag_steered");
    ggml_tensor * on_unsteered = share(kq, "attn_diag_unsteered");
    res->steer_out.diag.push_back({il, on_steered, on_unsteered});
}


ggml_tensor * llm_graph_context::build_attn_steer_pre(
         ggml_tensor * q,
         ggml_tensor * k,
         ggml_tensor * v,
         ggml_tensor * kq_mask,
         ggml_tensor * sinks,
                bool   v_trans,
               float   kq_scale,
                 int   il,
         ggml_tensor *& kq_b,
    const steer_attn *& steer_fa,
          steer_attn & with_target) const {
    // target share: F32 attention adds its bias to kq_b; under flash attention, the target-share rows'
    // output is computed apart (flash attention takes no per-head bias) and merged in by build_attn_steer_fa
    ggml_tensor * target_out = nullptr;
    if (steer_fa && steer_fa->target_gate) {
        ggml_tensor * target = build_attn_target(q, k, kq_mask, sinks, *steer_fa, kq_scale, il);
        with_target = *steer_fa;
        if (with_target.diag_kq_b) {
            with_target.diag_kq_b = ggml_add(ctx0, with_target.diag_kq_b, target);
        }
        if (steer_fa->target_merge) {
            target_out = build_attn_f32(q, k, v, target, kq_mask, sinks, v_trans, kq_scale);
            cb(target_out, "kqv_steered_target", il);
        } else {
            kq_b = ggml_add(ctx0, kq_b, target);
        }
        steer_fa = &with_target;
    }
    if (steer_fa && steer_fa->diag_emphasis) {
        build_attn_diag(q, k, kq_mask, sinks, *steer_fa, kq_scale, il);
    }
    return target_out;
}

ggml_tensor * llm_graph_context::build_attn_steer_fa(
         ggml_tensor * cur,
         ggml_tensor * q,
         ggml_tensor * k,
         ggml_tensor * v,
         ggml_tensor * v_mla,
         ggml_tensor * sinks,
             int64_t   n_kv_max,
               float   kq_scale,
                 int   il,
    const steer_attn * steer_fa,
         ggml_tensor * target_out) const {
    if (steer_fa && steer_fa->mask_biased) {
        GGML_ASSERT(v_mla == nullptr);
        ggml_tensor * steered = ggml_flash_attn_ext(ctx0, q, k, v, steer_fa->mask_biased, kq_scale, hparams.f_max_alibi_bias,
                                                    hparams.attn_soft_cap ? hparams.f_attn_logit_softcapping : 0.0f);
        ggml_flash_attn_ext_add_sinks(steered, sinks);
        ggml_flash_attn_ext_set_n_kv_max(steered, static_cast<int32_t>(n_kv_max));
        ggml_flash_attn_ext_set_prec (steered, GGML_PREC_F32);
        cb(steered, "fattn_steered", il);

        // [n_embd_head_v, n_head, n_tps, n_stream]: the steered result where the gate is 1
        cur = ggml_add(ctx0, cur, ggml_mul(ctx0, ggml_sub(ctx0, steered, cur), steer_fa->gate));
    }
    if (target_out) {
        cur = ggml_add(ctx0, cur, ggml_mul(ctx0, ggml_sub(ctx0, target_out, cur), steer_fa->target_merge));
    }
    return cur;
}

// PASTA bias per (query row, KV cell): the row's sequence bias where the cell holds a position of
// that sequence inside one of its ranges, 0 elsewhere (cells masked out by the KQ mask get 0 too).
// The bias does not depend on the query position, so rows of the same sequence share one row.
// A target-share sequence gets 1 instead of its bias (build_attn_target computes the bias per head and row).
// `emphasis`: instead, 1 where the cell holds one of the sequence's emphasized positions (diagnostics, target share).
void llama_kv_cache::set_input_steer_bias(ggml_tensor * dst, const llama_ubatch * ubatch, const llama_steering_state & steer, bool emphasis) const {
    GGML_ASSERT(ggml_backend_buffer_is_host(dst->buffer));
    GGML_ASSERT(dst->type == GGML_TYPE_F32);

    const int64_t n_kv     = dst->ne[0];
    const int64_t n_stream = dst->ne[3];
    const int64_t n_tps    = ubatch->n_tokens/n_stream;

    float * data = (float *) dst->data;

    for (int64_t s = 0; s < n_stream; ++s) {
        for (int64_t ii = 0; ii < n_tps; ++ii) {
            const int64_t i = s*n_tps + ii;
            float * row = data + n_kv*i;

            const llama_seq_id seq_id = ubatch->seq_id[i][0];
            const llama_steering_seq * ss = steer.find(seq_id);

            if (ss == nullptr) {
                std::fill(row, row + n_kv, 0.0f);
                continue;
            }
            if (ii > 0 && ubatch->seq_id[i - 1][0] == seq_id) {
                std::copy(row - n_kv, row, row);
                continue;
            }

            const auto & cells = v_cells.at(seq_to_stream[seq_id]);
            for (int64_t j = 0; j < n_kv; ++j) {
                if (cells.is_empty(j) || !cells.seq_has(j, seq_id)) {
                    row[j] = 0.0f;
                } else if (emphasis) {
                    row[j] = ss->emphasizes(cells.pos_get(j)) ? 1.0f : 0.0f;
                } else {
                    row[j] = ss->covers(cells.pos_get(j)) ? (ss->targets() ? 1.0f : ss->bias) : 0.0f;
                }
            }
        }
    }
}

void llama_kv_cache_context::set_input_steer_bias(ggml_tensor * dst, const llama_ubatch * ubatch, const llama_steering_state & steer, bool emphasis) const {
    kv->set_input_steer_bias(dst, ubatch, steer, emphasis);
}
