using System.Text.Json;

namespace Elect.Modeling;

/// <summary>
/// A component's <c>config.json</c> (diffusers / transformers). Accessors name the file and key in
/// their errors, so a wrong or incomplete checkpoint says what is wrong.
/// </summary>
public sealed class ModelConfig
{
    private readonly JsonElement _root;
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public ModelConfig(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{source}: expected a JSON object");
        _root = root.Clone();
        Source = source;
    }

    /// <summary>Where the config came from (used in error messages).</summary>
    public string Source { get; }

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"missing config file {path}", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return new ModelConfig(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})");
        }
    }

    public bool Has(string key)
    {
        _read.Add(key);
        return _root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;
    }

    public JsonElement? Raw(string key) => Has(key) ? _root.GetProperty(key) : null;

    private JsonElement Require(string key) =>
        Has(key) ? _root.GetProperty(key) : throw new InvalidDataException($"{Source}: missing key '{key}'");

    public int Int(string key) => Wrap(key, e => e.GetInt32());
    public int Int(string key, int fallback) => Has(key) ? Int(key) : fallback;
    public long Long(string key) => Wrap(key, e => e.GetInt64());
    public double Double(string key) => Wrap(key, e => e.GetDouble());
    public double Double(string key, double fallback) => Has(key) ? Double(key) : fallback;
    public bool Bool(string key, bool fallback) => Has(key) ? Wrap(key, e => e.GetBoolean()) : fallback;
    public string String(string key) => Wrap(key, e => e.GetString()!);
    public string String(string key, string fallback) => Has(key) ? String(key) : fallback;
    public int[] Ints(string key) => Wrap(key, e => e.EnumerateArray().Select(x => x.GetInt32()).ToArray());
    public string[] Strings(string key) => Wrap(key, e => e.EnumerateArray().Select(x => x.GetString()!).ToArray());

    /// <summary>An int, or a per-block int array (diffusers accepts both for several keys).</summary>
    public int[] IntOrInts(string key, int count) => Wrap(key, e =>
        e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray() : Enumerable.Repeat(e.GetInt32(), count).ToArray());

    /// <summary>
    /// Keys that never change what a model computes, for every reader: diffusers / transformers
    /// bookkeeping and transformers' generic <c>PretrainedConfig</c> fields, which older transformers
    /// versions write into every config (generation, labels, output flags, token ids the model does
    /// not use, training-only settings).
    /// </summary>
    public static readonly IReadOnlySet<string> InformationalKeys = new HashSet<string>(StringComparer.Ordinal)
    {
        "_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "_commit_hash",
        "_attn_implementation", "_attn_implementation_autoset", "architectures", "transformers_version",
        "torch_dtype", "dtype", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
        "use_bfloat16", "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder",
        "tie_encoder_decoder", "cross_attention_hidden_size", "add_cross_attention", "max_length",
        "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
        "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
        "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
        "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
        "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
        "begin_suppress_tokens", "finetuning_task", "id2label", "label2id", "tokenizer_class", "prefix",
        "bos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "task_specific_params",
        "problem_type", "use_cache", "output_past", "gradient_checkpointing",
        // no component here has a language-model head or a decoder mode
        "is_decoder", "tie_word_embeddings",
        "dropout", "attention_dropout", "activation_dropout", "dropout_rate", "classifier_dropout",
        "initializer_range", "initializer_factor",
    };

    /// <summary>
    /// Rejects what the reader does not implement. Every key of the file must be (a) read by the
    /// reader (through <see cref="Has"/> or an accessor) before this call, (b) informational
    /// (<see cref="InformationalKeys"/> or the reader's <paramref name="informational"/>, e.g. keys
    /// whose feature another key switches off), (c) one of <paramref name="onlyValues"/> holding a value
    /// the port supports (compared as JSON, so <c>1</c> equals <c>1.0</c>), or (d) an unknown key set to
    /// null. Anything else throws a <see cref="NotSupportedException"/> naming the file, key and value,
    /// e.g. <c>unet/config.json: 'class_embed_type' = "timestep" is not supported (only null)</c>.
    /// </summary>
    public void RejectUnsupported(IEnumerable<string>? informational = null,
                                  IReadOnlyDictionary<string, object?[]>? onlyValues = null)
    {
        var extra = informational is null ? new HashSet<string>() : new HashSet<string>(informational, StringComparer.Ordinal);
        foreach (var prop in _root.EnumerateObject())
        {
            var key = prop.Name;
            if (onlyValues is not null && onlyValues.TryGetValue(key, out var allowed))
            {
                if (allowed.Any(a => JsonEquals(prop.Value, a))) continue;
                throw new NotSupportedException($"{Source}: '{key}' = {prop.Value.GetRawText()} is not supported (only {string.Join(" or ", allowed.Select(Show))})");
            }
            if (_read.Contains(key) || InformationalKeys.Contains(key) || extra.Contains(key)) continue;
            if (prop.Value.ValueKind == JsonValueKind.Null) continue;
            throw new NotSupportedException($"{Source}: '{key}' = {prop.Value.GetRawText()} is not supported (this port does not implement the key)");
        }
    }

    private static string Show(object? v) => v switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        string s => JsonSerializer.Serialize(s),
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "null",
    };

    private static bool JsonEquals(JsonElement e, object? v) => v switch
    {
        null => e.ValueKind == JsonValueKind.Null,
        bool b => e.ValueKind == (b ? JsonValueKind.True : JsonValueKind.False),
        string s => e.ValueKind == JsonValueKind.String && e.GetString() == s,
        int or long or double => e.ValueKind == JsonValueKind.Number && e.GetDouble() == Convert.ToDouble(v, System.Globalization.CultureInfo.InvariantCulture),
        _ => throw new ArgumentException($"unsupported allowed value {v}"),
    };

    private T Wrap<T>(string key, Func<JsonElement, T> get)
    {
        var e = Require(key);
        try { return get(e); }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{Source}: key '{key}' has an unexpected value {e.GetRawText()}");
        }
    }
}
