#pragma once

// Included by llama-graph.h where llm_graph_input_i is defined (pasta-server's own file).

// upstream's (llama-graph.cpp): whether a tensor shaped like the KQ mask fits the next ubatch
bool can_reuse_kq_mask(ggml_tensor * kq_mask, const llama_kv_cache_context * mctx, const llama_ubatch & ubatch, const llama_cparams & cparams);

// PASTA attention steering inputs: a per-row bias over the KV cells of each KV cache that a steered
// layer reads (shaped like that cache's KQ mask), and a per-row head gate for each steered layer, both
// filled from the steering of the row's sequence. How a layer uses them: see build_attn_steer.
class llm_graph_input_steer : public llm_graph_input_i {
public:
    enum cache_kind { KV, KV_ISWA_BASE, KV_ISWA_SWA };

    struct cache_bias {
        cache_kind kind;
        const llama_kv_cache_context * mctx;
        ggml_tensor * bias;        // F32 [n_kv, n_tps, 1, n_stream]; 1 instead of the bias for target-share rows
        ggml_tensor * mask_biased; // flash attention: KQ mask + bias (built on first use)
        ggml_tensor * emphasis;    // diagnostics: 1 at the emphasized cells of each row, shaped like bias (built on first use)
    };

    struct layer_gate {
        int32_t il;
        bool heads_first;   // [1, n_head, n_tps, n_stream] (flash attention) or [1, n_tps, n_head, n_stream]
        float value;        // for a steered head: 1, or 1/kq_scale when the gate scales a KQ bias
        ggml_tensor * gate;
        bool target = false; // open for the rows of target-share sequences only (closed for them otherwise)
    };

    // per row: the target share t as odds (1 - t)/t, and the smallest scale of the biased cells' weight,
    // exp(bias) (0 and 1 for rows of other sequences); F32 [1, n_tps, 1, n_stream], built on first use
    struct target_rows {
        ggml_tensor * odds  = nullptr;
        ggml_tensor * floor = nullptr;
    };

    llm_graph_input_steer(const llama_steering_state * steer) : steer(steer) {}
    virtual ~llm_graph_input_steer() = default;

    void set_input(const llama_ubatch * ubatch) override;
    bool can_reuse(const llm_graph_params & params) override;

    cache_bias & get_bias(ggml_context * ctx0, cache_kind kind, const llama_kv_cache_context * mctx, const ggml_tensor * kq_mask);
    ggml_tensor * get_emphasis(ggml_context * ctx0, cache_bias & cache);
    const target_rows & get_target_rows(ggml_context * ctx0, int64_t n_tps, int64_t n_stream);

    const llama_steering_state * steer;
    std::vector<cache_bias> biases;
    std::vector<layer_gate> gates;
    target_rows target;
};
