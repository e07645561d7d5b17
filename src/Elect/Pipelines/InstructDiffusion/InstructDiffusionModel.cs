using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Unets;
using Elect.Schedulers;
using Elect.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines.InstructDiffusion;

/// <summary>
/// InstructDiffusion (cientgu/InstructDiffusion, <c>v1-5-pruned-emaonly-adaption-task.ckpt</c>) as the ELECT
/// authors run it (pipelines/instructdiffusion_pipeline.py): a CompVis LatentDiffusion with hybrid
/// conditioning (SD 1.5 UNet with 8 input channels, KL autoencoder, CLIP ViT-L/14 text encoder), loaded
/// from one single-file checkpoint, sampled with k-diffusion's Euler ancestral over its CompVisDenoiser.
/// Differences from the InstructPix2Pix family: the three branches are [instruction + image,
/// empty prompt + image, instruction + zero image]; guidance is
/// <c>0.5 (img + txt) + g_t (cond - img) + g_i (cond - txt)</c>; decoding divides by the scale factor as
/// <c>(1 / s) * z</c>, including the decoded input the BIS compares against; 8-bit images are truncated,
/// not rounded.
/// </summary>
public sealed class InstructDiffusionModel : ClipUnetEditingModel
{
    private readonly Tensor _alphasCumprod;

    public LdmConfig Config { get; }

    private InstructDiffusionModel(LdmConfig config, ClipTokenizer? tokenizer, ClipTextModel? text, UNet2DConditionModel unet,
                                   AutoencoderKL vae, Tensor alphasCumprod, Device device, ScalarType dtype)
        : base(tokenizer, text, unet, vae, device, dtype)
    {
        Config = config;
        _alphasCumprod = alphasCumprod;
        if (unet.InChannels != 2 * vae.LatentChannels)
            throw new InvalidDataException($"{config.Source}: UNet in_channels {unet.InChannels} is not twice the VAE's latent channels {vae.LatentChannels}");
    }

    /// <summary>Assembles a model from components (text encoding optional: see <see cref="PrepareWithEmbeddings"/>); the schedule comes from <paramref name="config"/>.</summary>
    public static InstructDiffusionModel FromComponents(LdmConfig config, ClipTokenizer? tokenizer, ClipTextModel? textEncoder,
        UNet2DConditionModel unet, AutoencoderKL vae, Device device, ScalarType dtype)
        => new(config, tokenizer, textEncoder, unet, vae, ComputeAlphasCumprod(config), device, dtype);

    public override string Name => "instructdiffusion";
    public override float DefaultTextGuidance => 7.5f;

    /// <summary>The model's <c>alphas_cumprod</c> (float32, CPU): the checkpoint's buffer when it has one (as the reference's non-strict load uses it), else computed from the config.</summary>
    public Tensor AlphasCumprod => _alphasCumprod;

    /// <summary>
    /// Loads a single-file checkpoint. <paramref name="tokenizerDir"/> holds the CLIP tokenizer files and a
    /// config.json (openai/clip-vit-large-patch14's CLIPModel config with <c>text_config</c>, or a CLIPTextModel
    /// config); <paramref name="configPath"/> is the LDM yaml (null: <c>checkpoint.yaml</c> beside the file if
    /// there is one, else the values of InstructDiffusion's configs/instruct_diffusion.yaml).
    /// </summary>
    public static InstructDiffusionModel Load(string checkpointPath, string tokenizerDir, Device device, ScalarType dtype, string? configPath = null)
    {
        if (!File.Exists(checkpointPath))
            throw new FileNotFoundException($"checkpoint not found: {checkpointPath} (the instructdiffusion family takes the single-file checkpoint, e.g. checkpoints/v1-5-pruned-emaonly-adaption-task.ckpt)", checkpointPath);
        LdmCheckpoint.Validate(checkpointPath);   // format, header / pickle (refused globals) before building any module
        configPath ??= DefaultConfigPath(checkpointPath);
        var config = configPath is null ? LdmConfig.InstructDiffusion : LdmConfig.Load(configPath);
        return FromTensors(config, visit => LdmCheckpoint.ForEach(checkpointPath, visit), checkpointPath, tokenizerDir, device, dtype);
    }

    /// <summary>The yaml with the checkpoint's name beside it (<c>X.ckpt</c> → <c>X.yaml</c>), if any.</summary>
    public static string? DefaultConfigPath(string checkpointPath)
    {
        var yaml = Path.ChangeExtension(checkpointPath, ".yaml");
        return File.Exists(yaml) ? yaml : null;
    }

    /// <summary>Loads from the tensors of a checkpoint given as (name, tensor) pairs; each tensor is disposed after use.</summary>
    public static InstructDiffusionModel FromTensors(LdmConfig config, IEnumerable<KeyValuePair<string, Tensor>> tensors, string source,
                                                     string tokenizerDir, Device device, ScalarType dtype) =>
        FromTensors(config, visit => { foreach (var (k, t) in tensors) visit(k, t); }, source, tokenizerDir, device, dtype);

    /// <summary>
    /// Loads from a checkpoint streamed by <paramref name="forEachTensor"/> (it calls the visitor once per
    /// tensor; the visitor owns and disposes each). Strict: every UNet / VAE / CLIP weight must be present
    /// with the shape the config gives (errors name the key and <paramref name="source"/>).
    /// </summary>
    public static InstructDiffusionModel FromTensors(LdmConfig config, Action<Action<string, Tensor>> forEachTensor, string source,
                                                     string tokenizerDir, Device device, ScalarType dtype)
    {
        TorchRuntime.Initialize(device);
        var tokenizer = ClipTokenizer.FromFolder(tokenizerDir);
        var clipConfig = ReadClipConfig(tokenizerDir);
        if (clipConfig.HiddenSize != config.Unet.ContextDim)
            throw new InvalidDataException($"{Path.Combine(tokenizerDir, "config.json")}: CLIP hidden_size {clipConfig.HiddenSize} differs from the UNet's context_dim {config.Unet.ContextDim} ({config.Source})");
        ClipTextModel? text = null;
        UNet2DConditionModel? unet = null;
        AutoencoderKL? vae = null;
        try
        {
            text = new ClipTextModel(clipConfig, device, dtype);
            text.eval();
            foreach (var p in text.parameters()) p.requires_grad = false;
            unet = ModuleSetup.ForInference(new UNet2DConditionModel(config.UnetDiffusersConfig()), dtype, device);
            vae = ModuleSetup.ForInference(new AutoencoderKL(config.VaeDiffusersConfig()), dtype, device);
            var alphas = LoadWeights(config, forEachTensor, source, text, unet, vae, tokenizerDir);
            return new InstructDiffusionModel(config, tokenizer, text, unet, vae, alphas, device, dtype);
        }
        catch
        {
            text?.Dispose();
            unet?.Dispose();
            vae?.Dispose();
            throw;
        }
    }

    private static Tensor LoadWeights(LdmConfig config, Action<Action<string, Tensor>> forEachTensor, string source,
                                      ClipTextModel text, UNet2DConditionModel unet, AutoencoderKL vae, string clipDir)
    {
        var keys = new LdmKeys(config);
        var targets = new (string Prefix, string Part, Dictionary<string, Tensor> State)[]
        {
            (LoadedPrefixes[0], "UNet", unet.state_dict()),
            (LoadedPrefixes[1], "VAE", vae.state_dict()),
            (LoadedPrefixes[2], "CLIP text encoder", text.state_dict()),
        };
        var seen = new HashSet<string>(StringComparer.Ordinal);
        Tensor? alphas = null;
        using (no_grad())
        {
            forEachTensor((name, t) =>
            {
                using (t)
                {
                    if (name == "alphas_cumprod") { alphas = t.to(ScalarType.Float32).clone(); return; }
                    if (IsIgnored(name)) return;
                    int which = Array.FindIndex(targets, x => name.StartsWith(x.Prefix, StringComparison.Ordinal));
                    if (which < 0) return;   // other top-level entries: unused, as by the reference's load_state_dict(strict=False)
                    var (prefix, part, state) = targets[which];
                    var inner = name[prefix.Length..];
                    bool convToLinear = false;
                    string? key = which switch { 0 => keys.Unet(inner), 1 => keys.Vae(inner, out convToLinear), _ => LdmKeys.Clip(inner) };
                    if (key is null || !state.TryGetValue(key, out var dest))
                        throw new InvalidDataException($"{source}: tensor '{name}' does not belong to the {part} described by {config.Source}");
                    var src = convToLinear && t.dim() == 4 && t.shape[2] == 1 && t.shape[3] == 1 ? t.flatten(1) : t;
                    using var _ = src;
                    if (!dest.shape.SequenceEqual(src.shape))
                        throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(", ", t.shape)}]; the {part} of {config.Source} expects [{string.Join(", ", dest.shape)}] for it");
                    if (!seen.Add($"{which}:{key}")) throw new InvalidDataException($"{source}: tensor '{name}' appears twice");
                    dest.copy_(src);
                }
            });
        }
        for (int w = 0; w < targets.Length; w++)
        {
            var missing = targets[w].State.Keys.Where(k => !seen.Contains($"{w}:{k}")).ToList();
            if (w == 2 && missing.Count == targets[w].State.Count && LoadClipFromFolder(text, clipDir))
                continue;   // as the reference: FrozenCLIPEmbedder's from_pretrained weights stay when the checkpoint has none
            if (missing.Count == targets[w].State.Count)
                throw new InvalidDataException($"{source}: no {targets[w].Part} weights ('{targets[w].Prefix}*') in the checkpoint{(w == 2 ? $", and no .safetensors weights in {clipDir}" : "")}");
            if (missing.Count > 0)
                throw new InvalidDataException($"{source}: missing {targets[w].Part} weight{(missing.Count > 1 ? "s" : "")} (diffusers names) '{string.Join("', '", missing.Take(5))}'{(missing.Count > 5 ? $" and {missing.Count - 5} more" : "")}");
        }
        if (alphas is not null && (alphas.dim() != 1 || alphas.shape[0] != config.Timesteps))
            throw new InvalidDataException($"{source}: alphas_cumprod has shape [{string.Join(", ", alphas.shape)}], expected [{config.Timesteps}] ({config.Source} timesteps)");
        return alphas ?? ComputeAlphasCumprod(config);
    }

    /// <summary>
    /// The text encoder weights of the CLIP folder (a CLIPModel's or CLIPTextModel's <c>model.safetensors</c>: its
    /// <c>text_model.*</c> tensors; vision tower and projections are unused). False when the folder has none.
    /// </summary>
    private static bool LoadClipFromFolder(ClipTextModel text, string dir)
    {
        var files = Directory.GetFiles(dir, "*.safetensors");
        if (files.Length == 0) return false;
        var file = files.FirstOrDefault(f => Path.GetFileName(f) == "model.safetensors") ?? (files.Length == 1 ? files[0]
            : throw new InvalidDataException($"{dir}: several .safetensors files and no model.safetensors"));
        var state = text.state_dict();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using (no_grad())
        {
            SafeTensors.ForEach(file, (info, t) =>
            {
                using (t)
                {
                    var key = LdmKeys.Clip(info.Name);
                    if (!state.TryGetValue(key, out var dest)) return;   // vision_model.*, projections, position_ids
                    if (!dest.shape.SequenceEqual(t.shape))
                        throw new InvalidDataException($"{file}: tensor '{info.Name}' has shape [{string.Join(", ", t.shape)}]; the CLIP text encoder of {Path.Combine(dir, "config.json")} expects [{string.Join(", ", dest.shape)}]");
                    dest.copy_(t);
                    seen.Add(key);
                }
            }, name => name.StartsWith("text_model.", StringComparison.Ordinal) || name.StartsWith("embeddings.", StringComparison.Ordinal)
                       || name.StartsWith("encoder.", StringComparison.Ordinal) || name.StartsWith("final_layer_norm.", StringComparison.Ordinal));
        }
        var missing = state.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{file}: missing CLIP text encoder weight{(missing.Count > 1 ? "s" : "")} '{string.Join("', '", missing.Take(5))}'");
        return true;
    }

    /// <summary>Whether a checkpoint key is one the loader copies into the UNet, the VAE or the CLIP text encoder.</summary>
    public static bool IsLoadedKey(string name) =>
        !IsIgnored(name) && LoadedPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));

    /// <summary>The checkpoint prefixes of the UNet, the VAE and the CLIP text encoder, in that order.</summary>
    private static readonly string[] LoadedPrefixes = ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."];

    // LatentDiffusion buffers recomputed from the config, EMA copies, and buffers transformers no longer saves
    private static bool IsIgnored(string name) =>
        name.StartsWith("model_ema.", StringComparison.Ordinal)
        || name.StartsWith("first_stage_model.loss.", StringComparison.Ordinal)
        || name.EndsWith("embeddings.position_ids", StringComparison.Ordinal)
        || name is "betas" or "alphas_cumprod_prev" or "sqrt_alphas_cumprod" or "sqrt_one_minus_alphas_cumprod"
            or "log_one_minus_alphas_cumprod" or "sqrt_recip_alphas_cumprod" or "sqrt_recipm1_alphas_cumprod"
            or "posterior_variance" or "posterior_log_variance_clipped" or "posterior_mean_coef1" or "posterior_mean_coef2"
            or "logvar" or "lvlb_weights" or "scale_factor";

    /// <summary>
    /// LDM's register_schedule for the "linear" schedule: betas = linspace(sqrt(start), sqrt(end), T, float64)^2,
    /// alphas_cumprod = cumprod(1 - betas) in float64, stored as float32.
    /// </summary>
    public static Tensor ComputeAlphasCumprod(LdmConfig config)
    {
        using var scope = NewDisposeScope();
        var betas = linspace(Math.Sqrt(config.LinearStart), Math.Sqrt(config.LinearEnd), config.Timesteps, dtype: ScalarType.Float64).pow(2);
        var ac = (1 - betas).cumprod(0);
        return ac.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The CLIP text encoder config from a tokenizer folder's config.json: a CLIPModel config's
    /// <c>text_config</c> or a CLIPTextModel config; keys absent take transformers' CLIPTextConfig defaults.
    /// </summary>
    public static ClipTextConfig ReadClipConfig(string dir)
    {
        var path = Path.Combine(dir, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException($"{dir}: missing config.json (the CLIP text encoder's config: openai/clip-vit-large-patch14's, or a CLIPTextModel config)", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
        if (root is not JsonObject top) throw new InvalidDataException($"{path}: expected a JSON object");
        var textCfg = top["text_config"] as JsonObject ?? top;
        var arch = top["architectures"] as JsonArray;
        if (arch is not null && top["text_config"] is null && !arch.Any(a => a?.GetValue<string>() == "CLIPTextModel"))
            throw new InvalidDataException($"{path}: architectures {arch.ToJsonString()} is neither CLIPModel (with text_config) nor CLIPTextModel");
        // transformers' CLIPTextConfig defaults for keys a saved config may leave out
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("CLIPTextModel"),
            ["vocab_size"] = Pick(textCfg, "vocab_size", 49408),
            ["hidden_size"] = Pick(textCfg, "hidden_size", 512),
            ["intermediate_size"] = Pick(textCfg, "intermediate_size", 2048),
            ["num_attention_heads"] = Pick(textCfg, "num_attention_heads", 8),
            ["num_hidden_layers"] = Pick(textCfg, "num_hidden_layers", 12),
            ["max_position_embeddings"] = Pick(textCfg, "max_position_embeddings", 77),
            ["hidden_act"] = Pick(textCfg, "hidden_act", "quick_gelu"),
            ["layer_norm_eps"] = Pick(textCfg, "layer_norm_eps", 1e-5),
            ["projection_dim"] = Pick(textCfg, "projection_dim", 512),
            ["eos_token_id"] = Pick(textCfg, "eos_token_id", 2),
        };
        using var doc = JsonDocument.Parse(o.ToJsonString());
        return ClipTextConfig.From(new ModelConfig(doc.RootElement, top["text_config"] is null ? path : $"{path} (text_config)"));
    }

    private static JsonNode? Pick<T>(JsonObject o, string key, T fallback) => o[key]?.DeepClone() ?? JsonValue.Create(fallback);

    public override IDenoisingScheduler CreateScheduler(int steps) => new KDiffusionEulerAncestral(_alphasCumprod, steps);

    /// <summary>Conditioning from given prompt embeddings ([1, 77, D] for the instruction and for the empty prompt).</summary>
    public override EditCondition PrepareWithEmbeddings(RgbImage image, Tensor text, Tensor empty)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var latents = EncodeImage(image);
        return new EditCondition
        {
            DecodedInput = DecodeLatents(latents),   // decode_first_stage(c_concat): the reference scales before decoding
            Conditioning = new InstructDiffusionConditioning(latents, text.to(DType, Device).clone(), empty.to(DType, Device).clone()),
            LatentHeight = latents.shape[2],
            LatentWidth = latents.shape[3],
        }.Owned();
    }

    /// <summary>decode_first_stage's <c>(1 / scale_factor) * z</c> (a multiplication, as the reference computes it).</summary>
    protected override Tensor ScaleForDecode(Tensor latents) => latents * (1.0 / Vae.ScalingFactor);

    /// <summary>The reference's <c>(255 * clamp((x + 1) / 2, 0, 1)).type(torch.uint8)</c>: truncation, here as exact 8-bit levels / 255.</summary>
    public override Tensor ToUnitImages(Tensor decoded)
    {
        using var scope = NewDisposeScope();
        var unit = ((decoded.to(ScalarType.Float32) + 1.0) / 2.0).clamp(0.0, 1.0);
        return ((unit * 255.0).floor() / 255.0).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _alphasCumprod.Dispose();
    }
}

/// <summary>Single-file checkpoint formats.</summary>
public static class LdmCheckpoint
{
    /// <summary>
    /// Streams the tensors of a single-file checkpoint to <paramref name="visit"/> (CPU, stored dtype; the
    /// visitor owns each): a <c>.safetensors</c> file, or a torch.save pickle (<c>.ckpt</c>, <c>.pt</c>,
    /// <c>.pth</c>, <c>.bin</c>) read by the restricted, non-executing reader: its <c>state_dict</c> entry when
    /// it has one (Lightning / InstructDiffusion checkpoints), else the whole dict. Other entries (optimizer
    /// states, hyper-parameters, even custom classes, kept as inert records) are not read, as the reference's
    /// <c>torch.load(ckpt)["state_dict"]</c> reads only that entry.
    /// </summary>
    public static void ForEach(string path, Action<string, Tensor> visit)
    {
        CheckFormat(path);
        if (Checkpoint.IsSafeTensors(path))
        {
            SafeTensors.ForEach(path, (info, t) => visit(info.Name, t));
            return;
        }
        using var ckpt = TorchCheckpoint.Open(path, UnknownGlobals.Opaque);
        ckpt.ForEachTensor(StateDictRoot(ckpt), visit);
    }

    /// <summary>
    /// Fails with a clear message unless <paramref name="path"/> is in a format <see cref="ForEach"/> reads and its
    /// header (safetensors) or pickle (torch.save; no storage is read) is sound, so that a corrupt or malicious
    /// file is refused in well under a second, before any module is built.
    /// </summary>
    public static void Validate(string path)
    {
        CheckFormat(path);
        WeightLoader.TensorHeaders(path, StateDictKey, UnknownGlobals.Opaque);
    }

    /// <summary>The entry of a Lightning / InstructDiffusion checkpoint that holds the weights.</summary>
    public const string StateDictKey = "state_dict";

    private static string? StateDictRoot(TorchCheckpoint ckpt) =>
        ckpt.Root is PickleDict top && top.ContainsKey(StateDictKey) ? StateDictKey : null;

    private static void CheckFormat(string path)
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is not (".safetensors" or ".ckpt" or ".pt" or ".pth" or ".bin"))
            throw new NotSupportedException($"{path}: unknown checkpoint format '{ext}' (expected .ckpt, .pt, .pth, .bin or .safetensors)");
    }
}
