#pragma once

// Attention steering (PASTA, Zhang et al. 2024): per sequence, an additive bias on the pre-softmax
// attention scores of chosen KV positions, for chosen (layer, query head) pairs.
// The state is written from any thread (llama_steering_set) and read by the decoding thread:
// writers fill `pending` under the mutex, llama_context::decode() takes a snapshot into `active`
// before it builds a graph, so a decode in flight never sees a half-written configuration.

#include "llama.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

using llama_pos_ranges = std::vector<std::pair<llama_pos, llama_pos>>; // sorted, disjoint [start, end)

inline bool llama_pos_ranges_cover(const llama_pos_ranges & ranges, llama_pos p) {
    // first range whose end is past p
    auto it = std::upper_bound(ranges.begin(), ranges.end(), p,
        [](llama_pos v, const std::pair<llama_pos, llama_pos> & r) { return v < r.second; });
    return it != ranges.end() && it->first <= p;
}

struct llama_steering_seq {
    float bias = 0.0f;               // added to the scores (log(alpha))
    llama_pos_ranges ranges;         // KV positions that get the bias
    std::vector<uint8_t> head_mask;  // [n_layer][n_head_max], 1 = steered

    bool diagnostics = false;        // record attention shares on `emphasis` (llama_steering_set_diagnostics)
    float target_share = 0.0f;       // > 0: the bias is chosen per head and row so that `emphasis` gets this
                                     // share of attention, `bias` the strongest allowed (llama_steering_set_target_share)
    llama_pos_ranges emphasis;

    bool targets() const { return target_share > 0.0f; }
    bool covers(llama_pos p) const { return llama_pos_ranges_cover(ranges, p); }
    bool emphasizes(llama_pos p) const { return (diagnostics || targets()) && llama_pos_ranges_cover(emphasis, p); }
};

struct llama_steering_state {
    std::map<llama_seq_id, llama_steering_seq> seqs;
    std::vector<uint8_t> layers; // [n_layer], 1 = some sequence steers a head of this layer
    int32_t n_head_max = 0;      // row width of every head_mask
    bool diagnostics = false;    // some sequence records attention diagnostics
    bool target_share = false;   // some sequence steers to a target share

    bool active() const { return !seqs.empty(); }

    const llama_steering_seq * find(llama_seq_id seq_id) const {
        auto it = seqs.find(seq_id);
        return it == seqs.end() ? nullptr : &it->second;
    }

    bool steers_layer(int32_t il) const {
        return il >= 0 && (size_t) il < layers.size() && layers[il] != 0;
    }

    void update_layers(int32_t n_layer, int32_t n_head_max_) {
        n_head_max = n_head_max_;
        layers.assign(n_layer, 0);
        diagnostics = false;
        target_share = false;
        for (const auto & [seq_id, s] : seqs) {
            diagnostics |= s.diagnostics;
            target_share |= s.targets();
            for (int32_t il = 0; il < n_layer; ++il) {
                for (int32_t h = 0; h < n_head_max; ++h) {
                    if (s.head_mask[(size_t) il*n_head_max + h]) {
                        layers[il] = 1;
                        break;
                    }
                }
            }
        }
    }

    int32_t n_layers() const {
        return (int32_t) std::count(layers.begin(), layers.end(), (uint8_t) 1);
    }
};

// what a graph is built for (llm_graph_params::steer): a graph is reused only for the same steered
// layers, diagnostics and target-share paths (llm_graph_params::allow_reuse)
struct llama_steering_graph_key {
    const llama_steering_state * state = nullptr;
    std::vector<uint8_t> layers; // steered layers when this graph was built (empty: no steering)
    bool diag   = false;         // the graph computes attention diagnostics
    bool target = false;         // some sequence steers to a target share (steered layers take the F32 path)

    bool operator==(const llama_steering_graph_key & other) const {
        return layers == other.layers && diag == other.diag && target == other.target;
    }
};

// what building a graph did (llm_graph_result::steer_out)
struct llama_steering_graph_out {
    int32_t n_steered_layers = 0; // layers that received the steering bias while building

    // attention diagnostics of a steered layer: each head's share of attention on the emphasized
    // cells, per row, with and without the row's steering ([1, n_tps, n_head, n_stream] F32 outputs)
    struct diag_out {
        int32_t il;
        ggml_tensor * steered;
        ggml_tensor * unsteered;
    };
    std::vector<diag_out> diag;
};

// while sched_reserve reserves the worst case: `worst` in place of the active state, restored after
struct llama_steering_swap {
    llama_steering_state & active;
    llama_steering_state saved;
    llama_steering_swap(llama_steering_state & active, llama_steering_state worst) : active(active), saved(std::move(active)) {
        active = std::move(worst);
    }
    ~llama_steering_swap() { active = std::move(saved); }
};

struct llama_steering {
    std::mutex mutex;
    llama_steering_state pending; // guarded by mutex
    bool dirty = false;           // guarded by mutex
    llama_steering_state active;  // only touched by the decoding thread

    // attention diagnostics recorded by decode, per sequence: rows of n_layer*n_head_max [steered, unsteered] pairs
    std::mutex diag_mutex;
    std::map<llama_seq_id, std::vector<float>> diag_rows; // guarded by diag_mutex
};
