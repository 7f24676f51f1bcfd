/*
 * test_config_reject.c: every rejection path of the configuration system (src/config*.c): unknown
 * and duplicate keys, a wrong type of every kind, ranges, cross-key rules, sizes past what holds
 * them, ranks, malformed and missing files, bad --set; and the import of a Hugging Face
 * config.json (src/hf.c), accepted cases first (the shape lands in the config, with the family's
 * defaults for absent fields), then its rejections. Each rejection runs config_load (or
 * config_validate, or the import sequence) in a forked child whose stderr goes to a pipe; the child
 * must exit with code 2 and print exactly one line that names the key path. What the system must
 * accept is test_config.c.
 *
 * Everything compared is exact; no random inputs. Temporary files live in a mkdtemp() folder
 * under /tmp, removed at the end.
 * Run from the project root (configs/ is read relative to it).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "config_jobs.h"
#include "hf.h"
#include "testlib.h"

/* The job must die with exit code 2 and one line on stderr containing every `want` (NULL-ended). */
static void expect_reject(const char *what, const struct job *j, const char *const *want) {
    char err[4096];
    int rc = run_child(j, err, sizeof err);
    size_t len = strlen(err);
    bool one_line = len > 0 && err[len - 1] == '\n' && strchr(err, '\n') == err + len - 1;
    bool ok = rc == 2 && one_line && strncmp(err, "error: ", 7) == 0;
    for (int i = 0; want[i]; i++) ok = ok && strstr(err, want[i]) != NULL;
    if (!t_check(ok, "%s: exit %d, stderr: %s (wanted exit 2, one line with the key)", what, rc,
                 err))
        return;
    printf("  ok %-34s %s", what, err);
}

/* A file with `text` must be rejected with a message containing the words of want. */
#define REJECT_FILE(name, text, ...)                                                 \
    do {                                                                             \
        char p_[512];                                                                \
        write_tmp(p_, sizeof p_, "bad.json", text);                                  \
        struct job j_ = {p_, 0, NULL, 0, false};                                     \
        expect_reject(name, &j_, (const char *const[]){__VA_ARGS__, NULL});          \
    } while (0)

/* configs/quickstart.json with one --set must be rejected. */
#define REJECT_SET(name, set, ...)                                                   \
    do {                                                                             \
        char *s_[] = {set};                                                          \
        struct job j_ = {"configs/quickstart.json", 1, s_, 0, false};                \
        expect_reject(name, &j_, (const char *const[]){__VA_ARGS__, NULL});          \
    } while (0)

/* The default config (an empty file) importing a Hugging Face folder whose config.json is `hf`
 * (plus a --set `extra` when not NULL) must be rejected with a message containing want's words. */
#define REJECT_IMPORT(name, hf, extra, ...)                                          \
    do {                                                                             \
        char p_[512], b_[512], from_[600];                                           \
        write_tmp(p_, sizeof p_, "hf/config.json", hf);                              \
        write_tmp(b_, sizeof b_, "base.json", "{}");                                 \
        snprintf(from_, sizeof from_, "model.init_from=%s/hf", tmp_dir);             \
        char *s_[] = {from_, extra};                                                 \
        struct job j_ = {b_, extra ? 2 : 1, s_, 0, true};                            \
        expect_reject(name, &j_, (const char *const[]){__VA_ARGS__, NULL});          \
    } while (0)

/* ---------------------------------------------------------------- Hugging Face import */

/* A Hugging Face config.json goes through the same checks as our config file (config_import):
 * errors name config.json and its field. One accepted import first: the shape lands in the config,
 * with Hugging Face's defaults for absent fields. */
static void test_import(void) {
    char dir[512], path[600], from[600];
    snprintf(dir, sizeof dir, "%s/hf", tmp_dir);
    mkdir(dir, 0755);
    /* LongRoPE with both spellings of the type, as some files write it, and the original context
     * at the top level */
    const char *good = "{\"model_type\": \"minicpm\", \"vocab_size\": 512, \"hidden_size\": 64, "
                       "\"intermediate_size\": 96, \"num_hidden_layers\": 2, "
                       "\"num_attention_heads\": 4, \"scale_emb\": 12, \"torch_dtype\": \"bf16\", "
                       "\"rope_scaling\": {\"type\": \"longrope\", \"rope_type\": \"longrope\", "
                       "\"long_factor\": [1, 2, 3, 4, 5, 6, 7, 8], \"short_factor\": [1, 1, 1, 1, 1, "
                       "1, 1, 1]}, \"original_max_position_embeddings\": 256}";
    write_tmp(path, sizeof path, "hf/config.json", good);
    char empty[512];
    write_tmp(empty, sizeof empty, "base.json", "{}");
    snprintf(from, sizeof from, "model.init_from=%s", dir);
    char *sets[] = {from, "model.hidden_size=64"};
    static struct config c;
    config_read(&c, empty, 2, sets);
    hf_import_config(&c);
    config_validate(&c, 1);
    const struct model_config *m = &c.model;
    t_check(m->model_type == MODEL_TYPE_MINICPM && m->hidden_size == 64 &&
                m->intermediate_size == 96 && m->num_hidden_layers == 2 &&
                m->num_key_value_heads == 4 && m->head_dim == 16 && m->tie_word_embeddings &&
                m->scale_emb == 12 && m->rope_scaling_type == ROPE_TYPE_LONGROPE &&
                m->rope_long_factor.n == 8 && m->rope_long_factor.items[7] == 8 &&
                m->rope_original_max_position_embeddings == 256,
            "import: shape, MHA and tied defaults, derived head_dim, scale_emb, LongRoPE");
    config_free(&c);
    const char *base = "\"model_type\": \"llama\", \"vocab_size\": 512, \"intermediate_size\": 96, "
                       "\"num_hidden_layers\": 2";
    char hf[600];
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": -64, \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: negative size", hf, NULL, "hf/config.json: hidden_size",
                  "expected a positive integer", "got -64");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": \"big\", \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: wrong type", hf, NULL, "hf/config.json: hidden_size", "got \"big\"");
    snprintf(hf, sizeof hf, "{%s, \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: missing field", hf, NULL, "hf/config.json", "\"hidden_size\" is missing");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": 64, \"num_attention_heads\": 4, "
             "\"num_key_value_heads\": 3}", base);
    REJECT_IMPORT("import: cross-key rule", hf, NULL, "hf/config.json: num_key_value_heads",
                  "does not divide num_attention_heads = 4");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": 64, \"num_attention_heads\": 4, "
             "\"rope_scaling\": {\"rope_type\": \"ntk\"}}", base);
    REJECT_IMPORT("import: rope type", hf, NULL, "hf/config.json: rope_scaling.rope_type",
                  "\"ntk\"");
    snprintf(hf, sizeof hf, "{\"model_type\": \"mistral\", \"vocab_size\": 512, "
             "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2, "
             "\"num_attention_heads\": 4}");
    REJECT_IMPORT("import: model type", hf, NULL, "hf/config.json: model_type", "\"mistral\"");
    snprintf(hf, sizeof hf, "{%s, \"hidden_size\": 64, \"num_attention_heads\": 4}", base);
    REJECT_IMPORT("import: disagrees with --set", hf, "model.hidden_size=128",
                  "model.hidden_size is 128 but", "hf/config.json says 64");
}

/* Qwen: the family's fields and defaults (Qwen3's head_dim 128 when config.json has none; qwen2
 * ignores attention_bias, which its config class lacks), sliding windows refused. */
static void test_import_qwen(void) {
    const char *base = "\"vocab_size\": 512, \"hidden_size\": 64, \"intermediate_size\": 96, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                       "\"num_key_value_heads\": 2";
    char hf[600], path[512], empty[512], from[600];
    snprintf(hf, sizeof hf, "{\"model_type\": \"qwen3\", %s, \"attention_bias\": true, "
             "\"use_sliding_window\": false, \"sliding_window\": null}", base);
    write_tmp(path, sizeof path, "hf/config.json", hf);
    write_tmp(empty, sizeof empty, "base.json", "{}");
    snprintf(from, sizeof from, "model.init_from=%s/hf", tmp_dir);
    char *sets[] = {from};
    static struct config c;
    config_read(&c, empty, 1, sets);
    hf_import_config(&c);
    config_validate(&c, 1);
    t_check(c.model.model_type == MODEL_TYPE_QWEN3 && c.model.head_dim == 128 &&
                c.model.attention_bias && !c.model.tie_word_embeddings,
            "import qwen3: head_dim %d (128 by default), attention_bias, untied", c.model.head_dim);
    config_free(&c);
    snprintf(hf, sizeof hf, "{\"model_type\": \"qwen2\", %s, \"attention_bias\": true}", base);
    write_tmp(path, sizeof path, "hf/config.json", hf);
    config_read(&c, empty, 1, sets);
    hf_import_config(&c);
    config_validate(&c, 1);
    t_check(c.model.model_type == MODEL_TYPE_QWEN2 && c.model.head_dim == 16 &&
                !c.model.attention_bias,
            "import qwen2: derived head_dim, attention_bias not a qwen2 field");
    config_free(&c);
    snprintf(hf, sizeof hf, "{\"model_type\": \"qwen2\", %s, \"use_sliding_window\": true, "
             "\"sliding_window\": 4096}", base);
    REJECT_IMPORT("import: sliding window", hf, NULL, "hf/config.json: use_sliding_window",
                  "not implemented");
    REJECT_FILE("qwen2 with attention_bias",
                "{\"model\": {\"model_type\": \"qwen2\", \"attention_bias\": true}}",
                "model.attention_bias", "qwen2");
}

/* ---------------------------------------------------------------- rejections */

static void test_rejections(void) {
    /* unknown keys, with the closest known one */
    REJECT_FILE("unknown key", "{\"train\": {\"max_step\": 3}}", "bad.json",
                "unknown key \"train.max_step\"", "did you mean \"train.max_steps\"");
    REJECT_FILE("nested unknown key", "{\"data\": {\"synthetic\": {\"n_pair\": 4}}}",
                "\"data.synthetic.n_pair\"", "did you mean \"data.synthetic.n_pairs\"");
    REJECT_FILE("key in the wrong section", "{\"hidden_size\": 64}",
                "did you mean \"model.hidden_size\"");
    REJECT_FILE("dotted name", "{\"model.hidden_size\": 64}", "\"model.hidden_size\"", "nest");
    REJECT_FILE("duplicate key", "{\"seed\": 1, \"seed\": 2}", "\"seed\" appears twice");
    REJECT_FILE("duplicate through alias",
                "{\"model\": {\"rope_scaling\": {\"type\": \"longrope\", \"rope_type\": \"x\"}}}",
                "model.rope_scaling.rope_type", "twice");
    /* wrong type, one per kind */
    REJECT_FILE("int: string", "{\"model\": {\"hidden_size\": \"abc\"}}",
                "bad.json: model.hidden_size: expected a positive integer, got \"abc\"");
    REJECT_FILE("int64: bool", "{\"data\": {\"seq_len\": true}}", "data.seq_len",
                "expected a positive integer", "got true");
    REJECT_FILE("uint64: negative", "{\"seed\": -1}", "seed", "non-negative integer", "got -1");
    REJECT_FILE("double: string", "{\"train\": {\"lr\": \"fast\"}}", "train.lr",
                "expected a number", "got \"fast\"");
    REJECT_FILE("bool: string", "{\"model\": {\"tie_word_embeddings\": \"yes\"}}",
                "model.tie_word_embeddings", "expected true or false");
    REJECT_FILE("string: number", "{\"run_dir\": 5}", "run_dir", "expected a string", "got 5");
    REJECT_FILE("enum: bad name", "{\"train\": {\"schedule\": \"linear\"}}", "train.schedule",
                "one of \"cosine\", \"wsd\", \"constant\"", "got \"linear\"");
    REJECT_FILE("enum: number", "{\"device\": 1}", "device", "one of \"cpu\", \"cuda\"");
    REJECT_FILE("string list: string", "{\"data\": {\"train_files\": \"a.tok\"}}",
                "data.train_files", "expected a list of strings");
    REJECT_FILE("string list: mixed", "{\"data\": {\"val_files\": [\"a.tok\", 3]}}",
                "data.val_files", "expected a list of strings");
    REJECT_FILE("number list: mixed",
                "{\"model\": {\"rope_scaling\": {\"long_factor\": [1, \"x\"]}}}",
                "model.rope_scaling.long_factor", "expected a list of numbers");
    REJECT_FILE("section: number", "{\"data\": {\"synthetic\": 3}}", "data.synthetic",
                "expected an object");
    REJECT_FILE("section: null", "{\"train\": null}", "train", "expected an object");
    /* integers and ranges */
    REJECT_FILE("non-integer int", "{\"model\": {\"num_hidden_layers\": 2.5}}",
                "model.num_hidden_layers", "expected a positive integer", "got 2.5");
    REJECT_FILE("int out of range", "{\"model\": {\"hidden_size\": 3e10}}",
                "model.hidden_size", "<= 2147483647", "got 30000000000");
    REJECT_FILE("zero size", "{\"model\": {\"intermediate_size\": 0}}",
                "model.intermediate_size", "positive integer", "got 0");
    REJECT_FILE("dense_len below -1", "{\"attention\": {\"dense_len\": -2}}",
                "attention.dense_len", "integer >= -1");
    REJECT_FILE("beta at 1", "{\"train\": {\"beta2\": 1}}", "train.beta2", "[0, 1)");
    REJECT_FILE("decay_fraction above 1", "{\"train\": {\"decay_fraction\": 1.5}}",
                "train.decay_fraction", "[0, 1]");
    REJECT_FILE("seed above 2^53", "{\"seed\": 1e17}", "seed", "<= 9007199254740992");
    /* cross-key checks */
    REJECT_FILE("heads not dividing",
                "{\"model\": {\"num_attention_heads\": 6, \"num_key_value_heads\": 4}}",
                "model.num_key_value_heads", "does not divide num_attention_heads = 6");
    REJECT_FILE("hidden not divisible by heads",
                "{\"model\": {\"hidden_size\": 100, \"num_attention_heads\": 3, "
                "\"num_key_value_heads\": 1}}",
                "model.head_dim", "divide");
    REJECT_FILE("odd head_dim", "{\"model\": {\"head_dim\": 33}}", "model.head_dim", "odd");
    REJECT_FILE("seq_len vs block_size", "{\"data\": {\"seq_len\": 1000}}", "data.seq_len",
                "attention.block_size = 64");
    REJECT_FILE("seq_len vs cp chunks", "{\"parallel\": {\"cp\": 2}, \"data\": {\"seq_len\": 192}}",
                "data.seq_len", "2 x parallel.cp");
    REJECT_FILE("sparse cp chunk vs window reach",
                "{\"parallel\": {\"cp\": 2}, \"data\": {\"seq_len\": 256}, \"attention\": "
                "{\"dense_len\": -1, \"kernel_size\": 64, \"kernel_stride\": 16}}",
                "data.seq_len", "chunks of 64 tokens", "window's reach");
    REJECT_FILE("block_size vs stride", "{\"attention\": {\"block_size\": 40}}",
                "attention.block_size", "kernel_stride = 16");
    REJECT_FILE("kernel_size vs stride", "{\"attention\": {\"kernel_size\": 40}}",
                "attention.kernel_size", "kernel_stride");
    REJECT_FILE("window vs block", "{\"attention\": {\"window_size\": 100}}",
                "attention.window_size", "block_size = 64");
    REJECT_FILE("no block selected", "{\"attention\": {\"topk\": 0, \"window_size\": 0}}",
                "attention.topk");
    REJECT_FILE("topk below the forced blocks",
                "{\"attention\": {\"topk\": 1, \"init_blocks\": 1}}", "attention.topk",
                "init_blocks + 1");
    REJECT_FILE("batch not a multiple", "{\"train\": {\"global_batch_size\": 6}}",
                "train.global_batch_size", "micro_batch_size");
    REJECT_FILE("warmup beyond max_steps", "{\"train\": {\"warmup_steps\": 300}}",
                "train.warmup_steps", "max_steps = 200");
    REJECT_FILE("min_lr above lr", "{\"train\": {\"min_lr\": 0.1}}", "train.min_lr");
    REJECT_FILE("eval without batches", "{\"train\": {\"eval_batches\": 0}}",
                "train.eval_batches");
    REJECT_FILE("recompute unknown", "{\"train\": {\"recompute\": \"selective\"}}",
                "train.recompute", "\"none\", \"attention\", \"full\"");
    REJECT_FILE("longrope factor count",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"longrope\", "
                "\"long_factor\": [1, 2], \"short_factor\": [1, 2], "
                "\"original_max_position_embeddings\": 256}}}",
                "model.rope_scaling.long_factor", "head_dim / 2 = 16");
    REJECT_FILE("unknown rope type", "{\"model\": {\"rope_scaling\": {\"rope_type\": \"ntk\"}}}",
                "model.rope_scaling.rope_type", "\"longrope\", \"llama3\"", "got \"ntk\"");
    REJECT_FILE("yarn without factor", "{\"model\": {\"rope_scaling\": {\"rope_type\": \"yarn\"}}}",
                "model.rope_scaling.factor", "positive number with rope_type yarn");
    REJECT_FILE("member of another rope type",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4, "
                "\"low_freq_factor\": 1}}}",
                "model.rope_scaling.low_freq_factor", "not read by rope_type yarn");
    REJECT_FILE("llama3 band",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
                "\"low_freq_factor\": 4, \"high_freq_factor\": 1}}}",
                "model.rope_scaling.high_freq_factor", "not above low_freq_factor = 4");
    REJECT_FILE("truncate without yarn",
                "{\"model\": {\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2, "
                "\"truncate\": false}}}",
                "model.rope_scaling.truncate", "yarn only");
    REJECT_FILE("longrope lists on plain RoPE",
                "{\"model\": {\"rope_scaling\": {\"short_factor\": [1]}}}",
                "model.rope_scaling.short_factor", "longrope only");
    REJECT_FILE("synthetic task vocabulary", "{\"model\": {\"vocab_size\": 100}}",
                "model.vocab_size", "synthetic");
    REJECT_FILE("synthetic task keys", "{\"data\": {\"synthetic\": {\"n_keys\": 4}}}",
                "data.synthetic.n_keys");
    REJECT_FILE("synthetic task too long", "{\"data\": {\"seq_len\": 64, \"synthetic\": "
                "{\"n_pairs\": 20, \"n_keys\": 64}}}", "data.seq_len", "too short");
    REJECT_FILE("shards without files", "{\"data\": {\"source\": \"shards\"}}",
                "data.train_files");
    REJECT_FILE("eod token with the synthetic task", "{\"data\": {\"eod_token\": 2}}",
                "data.eod_token", "data.synthetic.documents");
    REJECT_FILE("eod token past the vocabulary",
                "{\"data\": {\"source\": \"shards\", \"train_files\": [\"x.tok\"], "
                "\"eod_token\": 512}}", "data.eod_token", "model.vocab_size = 512");
    REJECT_FILE("eod token below -1", "{\"data\": {\"eod_token\": -2}}", "data.eod_token",
                "integer >= -1");
    REJECT_FILE("synthetic documents do not fit", "{\"data\": {\"seq_len\": 64, \"synthetic\": "
                "{\"documents\": 3}}}", "data.synthetic.documents is 3", "need 147");
    REJECT_FILE("a synthetic share of the synthetic task", "{\"data\": {\"synthetic\": "
                "{\"fraction\": 0.5}}}", "data.synthetic.fraction", "data.source \"shards\" to mix");
    REJECT_FILE("a synthetic share of 1", "{\"data\": {\"source\": \"shards\", \"train_files\": "
                "[\"x.tok\"], \"synthetic\": {\"fraction\": 1}}}", "data.synthetic.fraction");
    REJECT_FILE("a synthetic share that rounds to 1", "{\"data\": {\"source\": \"shards\", "
                "\"train_files\": [\"x.tok\"], \"synthetic\": {\"fraction\": 0.9999996}}}",
                "data.synthetic.fraction", "rounds to 1000000");
    REJECT_FILE("a synthetic share below a millionth", "{\"data\": {\"source\": \"shards\", "
                "\"train_files\": [\"x.tok\"], \"synthetic\": {\"fraction\": 1e-7}}}",
                "data.synthetic.fraction", "rounds to 0");
    REJECT_FILE("a synthetic share whose task does not fit", "{\"data\": {\"source\": "
                "\"shards\", \"train_files\": [\"x.tok\"], \"seq_len\": 64, \"synthetic\": "
                "{\"fraction\": 0.1, \"n_pairs\": 20, \"n_keys\": 64}}}", "data.seq_len",
                "too short");
    REJECT_FILE("empty resume", "{\"resume\": \"\"}", "resume");
    /* sizes (config_sizes.c): each past what holds it, named by its key */
    REJECT_FILE("layers past the table", "{\"model\": {\"num_hidden_layers\": 65537}}",
                "model.num_hidden_layers", "<= 65536", "got 65537");
    REJECT_FILE("q row past int", "{\"model\": {\"num_attention_heads\": 65536, "
                "\"num_key_value_heads\": 1, \"head_dim\": 65536}}", "model.num_attention_heads",
                "= 4294967296 values in a row of q", "2^31 - 1");
    REJECT_FILE("K2 window past int", "{\"attention\": {\"kernel_size\": 1073741824}}",
                "attention.kernel_size", "4 x kernel_size = 4294967296");
    REJECT_FILE("micro-batch rows past int", "{\"train\": {\"micro_batch_size\": 4194304, "
                "\"global_batch_size\": 4194304}}", "train.micro_batch_size",
                "= 2147483648 tokens in one micro-batch");
    REJECT_FILE("run tokens past 2^62", "{\"train\": {\"max_steps\": 9007199254740992, "
                "\"micro_batch_size\": 1, \"global_batch_size\": 1024}}", "train.max_steps",
                "tokens in the run", "2^62");
    REJECT_FILE("parameters past 2^62 bytes", "{\"model\": {\"vocab_size\": 2147483647, "
                "\"hidden_size\": 2147483646, \"num_attention_heads\": 2, "
                "\"num_key_value_heads\": 1, \"head_dim\": 64}}", "model.vocab_size",
                "4.61e+18 parameters", "beyond the limit of 2^62 bytes");
    REJECT_FILE("activations past 2^62 bytes", "{\"model\": {\"num_hidden_layers\": 65536, "
                "\"hidden_size\": 1048576, \"num_attention_heads\": 4, \"head_dim\": 64}, "
                "\"data\": {\"seq_len\": 2147483584}, \"train\": {\"micro_batch_size\": 1, "
                "\"global_batch_size\": 1}}", "data.seq_len", "activations of one micro-batch",
                "beyond the limit of 2^62 bytes");
#ifndef INFLLM_CUDA
    REJECT_FILE("cuda without backend", "{\"device\": \"cuda\"}", "device",
                "without the CUDA backend");
#endif
    {
        char *sets[] = {"parallel.cp=2", "data.seq_len=512"};
        struct job j = {"configs/quickstart.json", 2, sets, 3, false};
        expect_reject("ranks vs cp", &j, (const char *const[]){"parallel.cp", "ranks 3", NULL});
        struct job k = {"configs/quickstart.json", 2, sets, 8, false}; /* dp 4: 4 x 4 does not divide 8 */
        expect_reject("batch vs dp", &k,
                      (const char *const[]){"train.global_batch_size", "dp", NULL});
    }
    /* malformed files */
    REJECT_FILE("malformed JSON",
                "{\n  \"model\": {\n    \"hidden_size\": 128\n    \"x\": 1\n  }\n}\n",
                "bad.json", "line 4, column 5", "malformed JSON");
    REJECT_FILE("text after the object", "{\"seed\": 1}\n\nxyz\n", "bad.json", "line 3",
                "unexpected text");
    REJECT_FILE("not an object", "[1, 2]", "bad.json", "expected a JSON object");
    REJECT_FILE("empty file", "", "bad.json", "line 1", "malformed JSON");
    {
        char missing[512];
        snprintf(missing, sizeof missing, "%s/no_such.json", tmp_dir);
        struct job j = {missing, 0, NULL, 0, false};
        expect_reject("missing file", &j,
                      (const char *const[]){"no_such.json: cannot read: No such file", NULL});
        struct job d = {tmp_dir, 0, NULL, 0, false};
        expect_reject("folder as file", &d, (const char *const[]){"cannot read", NULL});
    }
    /* --set */
    REJECT_SET("--set bad number", "train.lr=abc",
               "--set train.lr=abc: expected a number >= 0, got \"abc\"");
    REJECT_SET("--set trailing junk", "train.lr=1e-4x", "--set train.lr=1e-4x",
               "expected a number");
    REJECT_SET("--set unknown key", "train.max_step=3", "--set train.max_step=3",
               "unknown key \"train.max_step\"", "did you mean \"train.max_steps\"");
    REJECT_SET("--set bad enum", "device=tpu", "--set device=tpu", "one of \"cpu\", \"cuda\"");
    REJECT_SET("--set bad bool", "model.tie_word_embeddings=yes", "model.tie_word_embeddings",
               "true or false");
    REJECT_SET("--set list as string", "data.train_files=a.tok", "data.train_files",
               "list of strings");
    REJECT_SET("--set no value", "train.lr", "--set train.lr", "key.path=value");
    REJECT_SET("--set section not object", "data.synthetic=5", "data.synthetic", "object");
    REJECT_SET("--set nested unknown", "data.synthetic={\"n_pair\": 1}",
               "\"data.synthetic.n_pair\"", "did you mean \"data.synthetic.n_pairs\"");
    REJECT_SET("--set nested bad type", "data.synthetic={\"n_pairs\": \"x\"}",
               "data.synthetic.n_pairs", "positive integer");
    REJECT_SET("--set breaks a cross check", "data.seq_len=100", "data.seq_len", "block_size");
}

int main(void) {
    tmp_create();
    test_rejections();
    test_import();
    test_import_qwen();
    tmp_remove();
    return t_finish("test_config_reject");
}
