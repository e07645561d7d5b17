using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.Unets;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Elect.Pipelines.InstructDiffusion;

/// <summary>The <c>unet_config.params</c> of an LDM config (ldm.modules.diffusionmodules.openaimodel.UNetModel).</summary>
public sealed record LdmUnetConfig(
    int InChannels, int OutChannels, int ModelChannels, int[] AttentionResolutions, int NumResBlocks, int[] ChannelMult,
    int NumHeads, int NumHeadChannels, int TransformerDepth, int ContextDim);

/// <summary>The <c>first_stage_config.params</c> of an LDM config (ldm.models.autoencoder.AutoencoderKL).</summary>
public sealed record LdmVaeConfig(int EmbedDim, int ZChannels, int InChannels, int OutChannels, int Ch, int[] ChMult, int NumResBlocks);

/// <summary>
/// The model section of a CompVis latent-diffusion config as InstructDiffusion writes it
/// (<c>configs/instruct_diffusion.yaml</c>: <c>ldm.models.diffusion.ddpm_edit.LatentDiffusion</c>, hybrid
/// conditioning, an openaimodel UNet with spatial transformers, a KL autoencoder and the CLIP text
/// encoder). Only what this port can build is accepted: any other value is an error naming the key,
/// never a silent guess. <see cref="UnetDiffusersConfig"/> and <see cref="VaeDiffusersConfig"/> give the
/// equivalent diffusers component configs.
/// </summary>
public sealed class LdmConfig
{
    public required string Source { get; init; }
    public required LdmUnetConfig Unet { get; init; }
    public required LdmVaeConfig Vae { get; init; }
    public required double ScaleFactor { get; init; }
    public required double LinearStart { get; init; }
    public required double LinearEnd { get; init; }
    public required int Timesteps { get; init; }

    /// <summary>The values of InstructDiffusion's <c>configs/instruct_diffusion.yaml</c> (SD 1.5 sizes, 8 input channels).</summary>
    public static LdmConfig InstructDiffusion { get; } = new()
    {
        Source = "built-in configs/instruct_diffusion.yaml",
        Unet = new LdmUnetConfig(InChannels: 8, OutChannels: 4, ModelChannels: 320, AttentionResolutions: [4, 2, 1], NumResBlocks: 2,
                                 ChannelMult: [1, 2, 4, 4], NumHeads: 8, NumHeadChannels: -1, TransformerDepth: 1, ContextDim: 768),
        Vae = new LdmVaeConfig(EmbedDim: 4, ZChannels: 4, InChannels: 3, OutChannels: 3, Ch: 128, ChMult: [1, 2, 4, 4], NumResBlocks: 2),
        ScaleFactor = 0.18215,
        LinearStart = 0.00085,
        LinearEnd = 0.012,
        Timesteps = 1000,
    };

    public static LdmConfig Load(string yamlPath)
    {
        if (!File.Exists(yamlPath)) throw new FileNotFoundException($"missing model config {yamlPath}", yamlPath);
        return Parse(File.ReadAllText(yamlPath), yamlPath);
    }

    /// <summary>Parses the text of an LDM yaml config (<paramref name="source"/> names it in errors).</summary>
    public static LdmConfig Parse(string yaml, string source)
    {
        JsonNode? root;
        try { root = YamlToJson.Convert(yaml); }
        catch (YamlException e) { throw new InvalidDataException($"{source}: not valid YAML ({e.Message})"); }
        var r = new Reader(source);
        var model = r.Obj(root, "model");
        var target = r.Str(model, "target", "model.target");
        if (!target.EndsWith("LatentDiffusion", StringComparison.Ordinal))
            throw new NotSupportedException($"{source}: model.target '{target}' is not a LatentDiffusion model");
        var p = r.Obj(model, "params", "model.params");
        var cond = r.OptStr(p, "conditioning_key", "model.params.conditioning_key");
        if (cond != "hybrid")
            throw new NotSupportedException($"{source}: model.params.conditioning_key is '{cond ?? "(none)"}'; an InstructDiffusion model concatenates the image latents and cross-attends to the text ('hybrid')");
        r.Expect(p, "parameterization", "eps", "model.params");
        r.Expect(p, "beta_schedule", "linear", "model.params");
        r.Expect(p, "scale_by_std", false, "model.params");
        if (p["given_betas"] is not null) throw new NotSupportedException($"{source}: model.params.given_betas is not supported");
        int channels = r.OptInt(p, "channels", 3, "model.params.channels");

        var unetCfg = Component(r, p, "unet_config", "openaimodel.UNetModel", "ldm.modules.diffusionmodules.openaimodel.UNetModel");
        var unet = ReadUnet(r, r.Obj(unetCfg, "params", "model.params.unet_config.params"));
        if (unet.OutChannels != channels)
            throw new InvalidDataException($"{source}: unet out_channels {unet.OutChannels} differs from model.params.channels {channels}");

        var vaeCfg = Component(r, p, "first_stage_config", "autoencoder.AutoencoderKL", "ldm.models.autoencoder.AutoencoderKL");
        var vae = ReadVae(r, r.Obj(vaeCfg, "params", "model.params.first_stage_config.params"));
        if (vae.EmbedDim != channels)
            throw new InvalidDataException($"{source}: first stage embed_dim {vae.EmbedDim} differs from model.params.channels {channels}");
        if (unet.InChannels != 2 * vae.EmbedDim)
            throw new InvalidDataException($"{source}: unet in_channels {unet.InChannels} is not noisy + image latents (2 x {vae.EmbedDim})");

        var condCfg = Component(r, p, "cond_stage_config", "FrozenCLIPEmbedder", "ldm.modules.encoders.modules.FrozenCLIPEmbedder");
        if (condCfg["params"] is JsonObject cp && cp["max_length"] is not null && r.OptInt(cp, "max_length", 77, "cond_stage_config.params.max_length") != 77)
            throw new NotSupportedException($"{source}: model.params.cond_stage_config.params.max_length must be 77");

        return new LdmConfig
        {
            Source = source,
            Unet = unet,
            Vae = vae,
            ScaleFactor = r.OptDouble(p, "scale_factor", 1.0, "model.params.scale_factor"),
            LinearStart = r.OptDouble(p, "linear_start", 1e-4, "model.params.linear_start"),
            LinearEnd = r.OptDouble(p, "linear_end", 2e-2, "model.params.linear_end"),
            Timesteps = r.OptInt(p, "timesteps", 1000, "model.params.timesteps"),
        };
    }

    // the arguments of openaimodel.UNetModel.__init__ (any other key is a TypeError in the reference too)
    private static readonly HashSet<string> UnetKeys =
    [
        "image_size", "in_channels", "model_channels", "out_channels", "num_res_blocks", "attention_resolutions", "dropout",
        "channel_mult", "conv_resample", "dims", "num_classes", "use_checkpoint", "use_fp16", "default_eps", "force_type_convert",
        "num_heads", "num_head_channels", "num_heads_upsample", "use_scale_shift_norm", "resblock_updown",
        "use_new_attention_order", "use_spatial_transformer", "transformer_depth", "context_dim", "n_embed", "legacy",
    ];

    private static LdmUnetConfig ReadUnet(Reader r, JsonObject u)
    {
        const string at = "model.params.unet_config.params";
        foreach (var (k, _) in u)
            if (!UnetKeys.Contains(k)) throw new NotSupportedException($"{r.Source}: {at}.{k} is not an argument of openaimodel.UNetModel");
        r.Expect(u, "use_spatial_transformer", true, at);
        r.Expect(u, "dims", 2, at);
        r.Expect(u, "conv_resample", true, at);
        r.Expect(u, "use_scale_shift_norm", false, at);
        r.Expect(u, "resblock_updown", false, at);
        // default_eps false: transformer GroupNorm eps 1e-6 (as diffusers' Transformer2DModel); true would be 1e-5
        r.Expect(u, "default_eps", false, at);
        if (u["num_classes"] is not null) throw new NotSupportedException($"{r.Source}: {at}.num_classes (class conditioning) is not supported");
        if (u["n_embed"] is not null) throw new NotSupportedException($"{r.Source}: {at}.n_embed (codebook prediction) is not supported");
        var cfg = new LdmUnetConfig(
            InChannels: r.Int(u, "in_channels", $"{at}.in_channels"),
            OutChannels: r.Int(u, "out_channels", $"{at}.out_channels"),
            ModelChannels: r.Int(u, "model_channels", $"{at}.model_channels"),
            AttentionResolutions: r.Ints(u, "attention_resolutions", $"{at}.attention_resolutions"),
            NumResBlocks: r.Int(u, "num_res_blocks", $"{at}.num_res_blocks"),
            ChannelMult: u["channel_mult"] is null ? [1, 2, 4, 8] : r.Ints(u, "channel_mult", $"{at}.channel_mult"),
            NumHeads: r.OptInt(u, "num_heads", -1, $"{at}.num_heads"),
            NumHeadChannels: r.OptInt(u, "num_head_channels", -1, $"{at}.num_head_channels"),
            TransformerDepth: r.OptInt(u, "transformer_depth", 1, $"{at}.transformer_depth"),
            ContextDim: r.Int(u, "context_dim", $"{at}.context_dim"));
        if (cfg.NumHeads == -1 && cfg.NumHeadChannels == -1)
            throw new InvalidDataException($"{r.Source}: {at}: set num_heads or num_head_channels");
        if (cfg.ChannelMult.Length < 1 || cfg.NumResBlocks < 1 || cfg.TransformerDepth < 1)
            throw new InvalidDataException($"{r.Source}: {at}: channel_mult, num_res_blocks and transformer_depth must be non-empty / positive");
        return cfg;
    }

    private static readonly HashSet<string> DdKeys =
    [
        "double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks", "attn_resolutions",
        "dropout", "default_eps", "force_type_convert", "resamp_with_conv", "give_pre_end", "tanh_out", "use_linear_attn", "attn_type",
    ];

    private static LdmVaeConfig ReadVae(Reader r, JsonObject v)
    {
        const string at = "model.params.first_stage_config.params";
        var dd = r.Obj(v, "ddconfig", $"{at}.ddconfig");
        foreach (var (k, _) in dd)
            if (!DdKeys.Contains(k)) throw new NotSupportedException($"{r.Source}: {at}.ddconfig.{k} is not an argument of the autoencoder's Encoder/Decoder");
        r.Expect(dd, "double_z", true, $"{at}.ddconfig");
        r.Expect(dd, "default_eps", false, $"{at}.ddconfig");
        r.Expect(dd, "resamp_with_conv", true, $"{at}.ddconfig");
        r.Expect(dd, "give_pre_end", false, $"{at}.ddconfig");
        r.Expect(dd, "tanh_out", false, $"{at}.ddconfig");
        r.Expect(dd, "use_linear_attn", false, $"{at}.ddconfig");
        r.Expect(dd, "attn_type", "vanilla", $"{at}.ddconfig");
        if (dd["attn_resolutions"] is JsonArray { Count: > 0 })
            throw new NotSupportedException($"{r.Source}: {at}.ddconfig.attn_resolutions must be empty (attention only in the middle block, as SD's VAE)");
        var cfg = new LdmVaeConfig(
            EmbedDim: r.Int(v, "embed_dim", $"{at}.embed_dim"),
            ZChannels: r.Int(dd, "z_channels", $"{at}.ddconfig.z_channels"),
            InChannels: r.Int(dd, "in_channels", $"{at}.ddconfig.in_channels"),
            OutChannels: r.Int(dd, "out_ch", $"{at}.ddconfig.out_ch"),
            Ch: r.Int(dd, "ch", $"{at}.ddconfig.ch"),
            ChMult: dd["ch_mult"] is null ? [1, 2, 4, 8] : r.Ints(dd, "ch_mult", $"{at}.ddconfig.ch_mult"),
            NumResBlocks: r.Int(dd, "num_res_blocks", $"{at}.ddconfig.num_res_blocks"));
        if (cfg.EmbedDim != cfg.ZChannels)
            throw new NotSupportedException($"{r.Source}: {at}.embed_dim {cfg.EmbedDim} differs from ddconfig.z_channels {cfg.ZChannels} (not a diffusers-compatible AutoencoderKL)");
        return cfg;
    }

    /// <summary>Heads of the spatial transformer at each level, as openaimodel.UNetModel computes them.</summary>
    public int[] HeadsPerLevel() => Unet.ChannelMult.Select(m =>
    {
        int ch = m * Unet.ModelChannels;
        if (Unet.NumHeadChannels == -1) return Unet.NumHeads;
        if (ch % Unet.NumHeadChannels != 0)
            throw new InvalidDataException($"{Source}: {ch} channels are not a multiple of num_head_channels {Unet.NumHeadChannels}");
        return ch / Unet.NumHeadChannels;
    }).ToArray();

    /// <summary>Whether level i (downsampling factor 2^i) has spatial transformers.</summary>
    public bool LevelHasAttention(int level) => Unet.AttentionResolutions.Contains(1 << level);

    /// <summary>The equivalent diffusers <c>UNet2DConditionModel</c> config (standard keys only).</summary>
    public ModelConfig UnetDiffusersConfig()
    {
        var u = Unet;
        int n = u.ChannelMult.Length;
        var heads = HeadsPerLevel();
        var down = Enumerable.Range(0, n).Select(i => LevelHasAttention(i) ? "CrossAttnDownBlock2D" : "DownBlock2D").ToArray();
        var up = Enumerable.Range(0, n).Reverse().Select(i => LevelHasAttention(i) ? "CrossAttnUpBlock2D" : "UpBlock2D").ToArray();
        var o = new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["in_channels"] = u.InChannels,
            ["out_channels"] = u.OutChannels,
            ["block_out_channels"] = Array(u.ChannelMult.Select(m => m * u.ModelChannels)),
            ["down_block_types"] = Array(down),
            ["up_block_types"] = Array(up),
            ["layers_per_block"] = u.NumResBlocks,
            ["attention_head_dim"] = Array(heads),
            ["cross_attention_dim"] = u.ContextDim,
            ["transformer_layers_per_block"] = u.TransformerDepth,
            ["norm_num_groups"] = 32,
            ["norm_eps"] = 1e-5,
            ["use_linear_projection"] = false,
            ["flip_sin_to_cos"] = true,
            ["freq_shift"] = 0,
            ["downsample_padding"] = 1,
            ["mid_block_scale_factor"] = 1,
            ["act_fn"] = "silu",
            ["center_input_sample"] = false,
        };
        return ToConfig(o, $"{Source} (unet_config as diffusers UNet2DConditionModel)");
    }

    /// <summary>The equivalent diffusers <c>AutoencoderKL</c> config (standard keys only).</summary>
    public ModelConfig VaeDiffusersConfig()
    {
        var v = Vae;
        int n = v.ChMult.Length;
        var o = new JsonObject
        {
            ["_class_name"] = "AutoencoderKL",
            ["in_channels"] = v.InChannels,
            ["out_channels"] = v.OutChannels,
            ["latent_channels"] = v.ZChannels,
            ["block_out_channels"] = Array(v.ChMult.Select(m => m * v.Ch)),
            ["down_block_types"] = Array(Enumerable.Repeat("DownEncoderBlock2D", n)),
            ["up_block_types"] = Array(Enumerable.Repeat("UpDecoderBlock2D", n)),
            ["layers_per_block"] = v.NumResBlocks,
            ["norm_num_groups"] = 32,
            ["act_fn"] = "silu",
            ["scaling_factor"] = ScaleFactor,
        };
        return ToConfig(o, $"{Source} (first_stage_config as diffusers AutoencoderKL)");
    }

    private static JsonArray Array<T>(IEnumerable<T> values) => new(values.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray());

    private static ModelConfig ToConfig(JsonObject o, string source)
    {
        using var doc = JsonDocument.Parse(o.ToJsonString());
        return new ModelConfig(doc.RootElement, source);
    }

    /// <summary>Typed access into the converted YAML tree with errors naming the file and key path.</summary>
    /// <summary>The sub-config <c>model.params.&lt;key&gt;</c>, whose <c>target</c> must end with <paramref name="suffix"/> (the class <paramref name="expected"/>).</summary>
    private static JsonObject Component(Reader r, JsonObject modelParams, string key, string suffix, string expected)
    {
        var cfg = r.Obj(modelParams, key, $"model.params.{key}");
        var target = r.Str(cfg, "target", $"model.params.{key}.target");
        if (!target.EndsWith(suffix, StringComparison.Ordinal))
            throw new NotSupportedException($"{r.Source}: model.params.{key}.target '{target}' is not {expected}");
        return cfg;
    }

    private sealed class Reader(string source)
    {
        public string Source => source;

        public JsonObject Obj(JsonNode? parent, string key, string? path = null) =>
            (parent as JsonObject)?[key] as JsonObject ?? throw new InvalidDataException($"{source}: missing section '{path ?? key}'");

        public string Str(JsonObject o, string key, string path) =>
            o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : throw new InvalidDataException($"{source}: missing or non-text '{path}'");

        public string? OptStr(JsonObject o, string key, string path) => o[key] is null ? null : Str(o, key, path);

        public int Int(JsonObject o, string key, string path) =>
            o[key] is JsonValue v && v.TryGetValue(out long l) && l is >= int.MinValue and <= int.MaxValue
                ? (int)l : throw new InvalidDataException($"{source}: missing or non-integer '{path}'{Found(o, key)}");

        public int OptInt(JsonObject o, string key, int fallback, string path) => o[key] is null ? fallback : Int(o, key, path);

        public double OptDouble(JsonObject o, string key, double fallback, string path)
        {
            if (o[key] is null) return fallback;
            if (o[key] is JsonValue v)
            {
                if (v.TryGetValue(out double d)) return d;
                if (v.TryGetValue(out long l)) return l;
            }
            throw new InvalidDataException($"{source}: non-numeric '{path}'{Found(o, key)}");
        }

        public int[] Ints(JsonObject o, string key, string path) =>
            o[key] is JsonArray a
                ? a.Select(x => x is JsonValue v && v.TryGetValue(out long l) ? (int)l : throw new InvalidDataException($"{source}: '{path}' must be a list of integers")).ToArray()
                : throw new InvalidDataException($"{source}: missing or non-list '{path}'{Found(o, key)}");

        /// <summary>Fails unless <paramref name="key"/> is absent or equal to the only supported value.</summary>
        public void Expect<T>(JsonObject o, string key, T supported, string at)
        {
            if (o[key] is null) return;
            bool ok = o[key] is JsonValue v && v.TryGetValue(out T? got) && EqualityComparer<T>.Default.Equals(got, supported);
            if (!ok && supported is int i && o[key] is JsonValue lv && lv.TryGetValue(out long l)) ok = l == i;
            if (!ok)
                throw new NotSupportedException($"{source}: {at}.{key} is {o[key]!.ToJsonString()}; only {JsonValue.Create(supported)!.ToJsonString()} is supported");
        }

        private static string Found(JsonObject o, string key) => o[key] is null ? "" : $" (found {o[key]!.ToJsonString()})";
    }
}

/// <summary>YAML (as OmegaConf reads LDM configs) to a JSON tree: plain scalars become booleans, integers or floats where they parse as such.</summary>
internal static class YamlToJson
{
    public static JsonNode? Convert(string yaml)
    {
        var stream = new YamlStream();
        using (var reader = new StringReader(yaml)) stream.Load(reader);
        return stream.Documents.Count == 0 ? null : Node(stream.Documents[0].RootNode);
    }

    private static JsonNode? Node(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(kv => new KeyValuePair<string, JsonNode?>(((YamlScalarNode)kv.Key).Value ?? "", Node(kv.Value)))),
        YamlSequenceNode s => new JsonArray(s.Children.Select(Node).ToArray()),
        YamlScalarNode sc => Scalar(sc),
        _ => null,
    };

    private static JsonNode? Scalar(YamlScalarNode s)
    {
        var text = s.Value ?? "";
        if (s.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded)
            return JsonValue.Create(text);
        switch (text)
        {
            case "" or "~" or "null" or "Null" or "NULL": return null;
            case "true" or "True" or "TRUE": return JsonValue.Create(true);
            case "false" or "False" or "FALSE": return JsonValue.Create(false);
        }
        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return JsonValue.Create(l);
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d)) return JsonValue.Create(d);
        return JsonValue.Create(text);
    }
}
