using Elect.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Transformers;

/// <summary>The keys of a diffusers <c>SD3Transformer2DModel</c> config.json (diffusers' defaults where absent).</summary>
public sealed record SD3TransformerConfig(
    int SampleSize, int PatchSize, int InChannels, int OutChannels, int NumLayers, int AttentionHeadDim,
    int NumAttentionHeads, int JointAttentionDim, int CaptionProjectionDim, int PooledProjectionDim,
    int? PosEmbedMaxSize, string? QkNorm, int[] DualAttentionLayers)
{
    public int InnerDim => NumAttentionHeads * AttentionHeadDim;

    public static SD3TransformerConfig Load(string path) => From(ModelConfig.Load(path));

    public static SD3TransformerConfig From(ModelConfig c)
    {
        int inChannels = c.Int("in_channels", 16);
        var cfg = new SD3TransformerConfig(
            SampleSize: c.Int("sample_size", 128),
            PatchSize: c.Int("patch_size", 2),
            InChannels: inChannels,
            OutChannels: c.Int("out_channels", inChannels),
            NumLayers: c.Int("num_layers", 18),
            AttentionHeadDim: c.Int("attention_head_dim", 64),
            NumAttentionHeads: c.Int("num_attention_heads", 18),
            JointAttentionDim: c.Int("joint_attention_dim", 4096),
            CaptionProjectionDim: c.Int("caption_projection_dim", 1152),
            PooledProjectionDim: c.Int("pooled_projection_dim", 2048),
            // null (or absent: diffusers writes every key) means no cropping: the grid is sample_size/patch_size
            PosEmbedMaxSize: c.Has("pos_embed_max_size") ? c.Int("pos_embed_max_size") : null,
            QkNorm: c.Has("qk_norm") ? c.String("qk_norm") : null,
            DualAttentionLayers: c.Has("dual_attention_layers") ? c.Ints("dual_attention_layers") : []);
        cfg.Validate(c.Source);
        c.RejectUnsupported(onlyValues: new Dictionary<string, object?[]> { ["_class_name"] = ["SD3Transformer2DModel"] });
        return cfg;
    }

    private void Validate(string source)
    {
        if (PatchSize < 1) throw new InvalidDataException($"{source}: patch_size must be positive (got {PatchSize})");
        if (NumLayers < 1) throw new InvalidDataException($"{source}: num_layers must be positive (got {NumLayers})");
        if (QkNorm is not null && QkNorm != "rms_norm")
            throw new NotSupportedException($"{source}: qk_norm '{QkNorm}' is not supported (SD3 uses null or \"rms_norm\")");
        if (CaptionProjectionDim != InnerDim)
            throw new NotSupportedException($"{source}: caption_projection_dim {CaptionProjectionDim} differs from num_attention_heads * attention_head_dim = {InnerDim}; the joint blocks need them equal");
        if (InnerDim % 4 != 0)
            throw new InvalidDataException($"{source}: num_attention_heads * attention_head_dim = {InnerDim} must be divisible by 4 (2-D sin-cos positions)");
        foreach (var l in DualAttentionLayers)
            if (l < 0 || l >= NumLayers)
                throw new InvalidDataException($"{source}: dual_attention_layers names layer {l}, the model has {NumLayers} (0..{NumLayers - 1})");
    }
}

/// <summary>
/// diffusers' <c>SD3Transformer2DModel</c> (MMDiT, Stable Diffusion 3 / 3.5 and UltraEdit): patch
/// embedding with a cropped 2-D sin-cos position grid, timestep + pooled-text conditioning, joint
/// image/text transformer blocks (the last one context_pre_only), adaptive final norm and unpatchify.
/// State-dict keys are diffusers'.
/// </summary>
public sealed class SD3Transformer2DModel : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
    private readonly SD3PatchEmbed pos_embed;
    private readonly SD3TimeTextEmbedding time_text_embed;
    private readonly Linear context_embedder;
    private readonly ModuleList<SD3JointTransformerBlock> transformer_blocks;
    private readonly SD3AdaLayerNormContinuous norm_out;
    private readonly Linear proj_out;

    /// <param name="persistentPosEmbed">
    /// Whether <c>pos_embed.pos_embed</c> is a state_dict entry (diffusers stores it when pos_embed_max_size is set;
    /// pass false for a checkpoint that lacks it, so the computed grid is used).
    /// </param>
    public SD3Transformer2DModel(SD3TransformerConfig config, bool persistentPosEmbed = true, Device? device = null, ScalarType? dtype = null)
        : base(nameof(SD3Transformer2DModel))
    {
        Config = config;
        int dim = config.InnerDim;
        pos_embed = new SD3PatchEmbed(config.SampleSize, config.PatchSize, config.InChannels, dim, config.PosEmbedMaxSize,
                                      persistentPosEmbed && config.PosEmbedMaxSize is not null, device, dtype);
        time_text_embed = new SD3TimeTextEmbedding(dim, config.PooledProjectionDim, device, dtype);
        context_embedder = nn.Linear(config.JointAttentionDim, config.CaptionProjectionDim, hasBias: true, device: device, dtype: dtype);
        var dual = config.DualAttentionLayers.ToHashSet();
        transformer_blocks = nn.ModuleList(Enumerable.Range(0, config.NumLayers).Select(i =>
            new SD3JointTransformerBlock(dim, config.NumAttentionHeads, config.AttentionHeadDim,
                                         contextPreOnly: i == config.NumLayers - 1, rmsQkNorm: config.QkNorm == "rms_norm",
                                         dualAttention: dual.Contains(i), device, dtype)).ToArray());
        norm_out = new SD3AdaLayerNormContinuous(dim, dim, device, dtype);
        proj_out = nn.Linear(dim, (long)config.PatchSize * config.PatchSize * config.OutChannels, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public SD3TransformerConfig Config { get; }
    public int InChannels => Config.InChannels;
    public int OutChannels => Config.OutChannels;
    public int PatchSize => Config.PatchSize;

    /// <summary>The (cropped) positional embedding added to a latent of height x width: [1, (H/p)*(W/p), dim].</summary>
    public Tensor PositionalEmbeddingFor(long height, long width) => pos_embed.PositionalEmbedding(height, width);

    /// <summary>
    /// Loads a diffusers transformer folder (<c>config.json</c> + safetensors) with strict key matching,
    /// builds it directly in <paramref name="dtype"/> on <paramref name="device"/>, in eval mode without gradients.
    /// </summary>
    public static SD3Transformer2DModel FromPretrained(string dir, ScalarType dtype, Device device)
    {
        TorchRuntime.Initialize(device);
        var config = SD3TransformerConfig.Load(Path.Combine(dir, "config.json"));
        const string posKey = "pos_embed.pos_embed";
        var files = WeightLoader.FindWeightFiles(dir);
        bool fileHasPos = WeightLoader.TensorNames(files).Contains(posKey);
        // a stored grid without pos_embed_max_size is diffusers' non-persistent buffer: recomputed, not loaded
        return ModuleSetup.LoadPretrained(new SD3Transformer2DModel(config, persistentPosEmbed: fileHasPos, device, dtype), dir, dtype, device,
            ignoreUnexpected: k => k == posKey && config.PosEmbedMaxSize is null, builtInPlace: true);
    }

    /// <summary>
    /// Predicts the flow velocity. <paramref name="hiddenStates"/> [B, in_channels, H, W] (H, W multiples
    /// of patch_size), <paramref name="encoderHiddenStates"/> [B, L, joint_attention_dim],
    /// <paramref name="pooledProjections"/> [B, pooled_projection_dim], <paramref name="timestep"/> float
    /// [B], [1] or a scalar (broadcast). Returns [B, out_channels, H, W] in the model's dtype.
    /// </summary>
    public override Tensor forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor pooledProjections, Tensor timestep)
    {
        if (hiddenStates.dim() != 4)
            throw new ArgumentException($"hidden_states must be [B, C, H, W], got [{string.Join(", ", hiddenStates.shape)}]");
        long b = hiddenStates.shape[0], height = hiddenStates.shape[2], width = hiddenStates.shape[3];
        int p = Config.PatchSize;
        if (hiddenStates.shape[1] != Config.InChannels)
            throw new ArgumentException($"hidden_states has {hiddenStates.shape[1]} channels, the transformer takes {Config.InChannels}");
        if (height % p != 0 || width % p != 0)
            throw new ArgumentException($"latent size {height}x{width} is not a multiple of patch_size {p}");
        if (encoderHiddenStates.dim() != 3 || encoderHiddenStates.shape[0] != b || encoderHiddenStates.shape[2] != Config.JointAttentionDim)
            throw new ArgumentException($"encoder_hidden_states must be [{b}, L, {Config.JointAttentionDim}], got [{string.Join(", ", encoderHiddenStates.shape)}]");
        if (pooledProjections.dim() != 2 || pooledProjections.shape[0] != b || pooledProjections.shape[1] != Config.PooledProjectionDim)
            throw new ArgumentException($"pooled_projections must be [{b}, {Config.PooledProjectionDim}], got [{string.Join(", ", pooledProjections.shape)}]");
        if (timestep.numel() != b && timestep.numel() != 1)
            throw new ArgumentException($"timestep has {timestep.numel()} values for a batch of {b}");

        using var scope = torch.NewDisposeScope();
        var t = timestep.reshape(-1).to(hiddenStates.device);
        if (t.shape[0] != b) t = t.expand(b);

        var hidden = pos_embed.forward(hiddenStates).contiguous();
        var temb = time_text_embed.forward(t, pooledProjections);
        var context = context_embedder.forward(encoderHiddenStates);

        foreach (var block in transformer_blocks)
        {
            var (newContext, newHidden) = block.Forward(hidden, context, temb);
            hidden.Dispose();
            context.Dispose();
            hidden = newHidden;
            if (newContext is null) break; // context_pre_only: the last block
            context = newContext;
        }

        hidden = norm_out.forward(hidden, temb);
        hidden = proj_out.forward(hidden);

        long h = height / p, w = width / p;
        var output = hidden.reshape(b, h, w, p, p, Config.OutChannels)
                           .permute(0, 5, 1, 3, 2, 4) // nhwpqc -> nchpwq
                           .reshape(b, Config.OutChannels, h * p, w * p);
        return output.MoveToOuterDisposeScope();
    }
}
