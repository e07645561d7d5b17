using System.Text.Json;
using Elect.Modeling;
using Elect.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Unets;

/// <summary>
/// diffusers <c>UNet2DConditionModel</c> with the SD 1.x / 2.x structure (positional time embedding,
/// CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D).
/// State-dict keys equal diffusers'. Config features outside that structure (class or addition
/// embeddings, other block types, ...) are rejected naming the config key. <c>upcast_attention</c>
/// is accepted and, as with diffusers' default scaled-dot-product processor, has no effect;
/// <c>resnet_out_scale_factor</c> is likewise unused by these block types in diffusers.
/// </summary>
public sealed class UNet2DConditionModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly TimestepEmbedding time_embedding;
    private readonly ModuleList<UNetDownBlock2D> down_blocks;
    private readonly UNetMidBlock2DCrossAttn mid_block;
    private readonly ModuleList<UNetUpBlock2D> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    private readonly int _timeProjDim;
    private readonly bool _flipSinToCos;
    private readonly double _freqShift;
    private readonly bool _centerInput;
    private readonly int _numUpsamplers;

    public UNet2DConditionModel(ModelConfig config) : this(UNet2DConditionConfig.From(config)) { }

    public UNet2DConditionModel(UNet2DConditionConfig config) : base(nameof(UNet2DConditionModel))
    {
        Config = config;
        var blockOut = config.BlockOutChannels;
        int n = blockOut.Length;
        var (downTypes, upTypes) = (config.DownBlockTypes, config.UpBlockTypes);
        var (layersPerBlock, crossDim, heads, transformerLayers) = (config.LayersPerBlock, config.CrossAttentionDims, config.AttentionHeads, config.TransformerLayersPerBlock);
        var (groups, eps, linearProj, downPadding, midScale) = (config.NormNumGroups, config.NormEps, config.UseLinearProjection, config.DownsamplePadding, config.MidBlockScaleFactor);
        var (convInKernel, convOutKernel, timeEmbedDim) = (config.ConvInKernel, config.ConvOutKernel, config.TimeEmbeddingDim);
        InChannels = config.InChannels;
        OutChannels = config.OutChannels;
        CrossAttentionDim = crossDim[0];
        _flipSinToCos = config.FlipSinToCos;
        _freqShift = config.FreqShift;
        _centerInput = config.CenterInputSample;
        _timeProjDim = blockOut[0];

        CrossAttentionSpec Spec(int i) => new(heads[i], [transformerLayers[i]], crossDim[i], linearProj);

        conv_in = nn.Conv2d(InChannels, blockOut[0], convInKernel, padding: (convInKernel - 1) / 2);
        time_embedding = new TimestepEmbedding(_timeProjDim, timeEmbedDim);

        down_blocks = nn.ModuleList<UNetDownBlock2D>();
        int output = blockOut[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = blockOut[i];
            down_blocks.Add(new UNetDownBlock2D(input, output, timeEmbedDim, layersPerBlock[i], groups, eps,
                addDownsample: i != n - 1, downPadding, downTypes[i] == "CrossAttnDownBlock2D" ? Spec(i) : null));
        }

        mid_block = new UNetMidBlock2DCrossAttn(blockOut[^1], timeEmbedDim, groups, eps, midScale, Spec(n - 1));

        up_blocks = nn.ModuleList<UNetUpBlock2D>();
        var rev = blockOut.Reverse().ToArray();
        output = rev[0];
        for (int i = 0; i < n; i++)
        {
            bool final = i == n - 1;
            int prev = output;
            output = rev[i];
            int input = rev[Math.Min(i + 1, n - 1)];
            int r = n - 1 - i; // config index of the mirrored block
            if (!final) _numUpsamplers++;
            up_blocks.Add(new UNetUpBlock2D(input, prev, output, timeEmbedDim, layersPerBlock[r] + 1, groups, eps,
                addUpsample: !final, upTypes[i] == "CrossAttnUpBlock2D" ? Spec(r) : null));
        }

        conv_norm_out = nn.GroupNorm(groups, blockOut[0], eps, affine: true);
        conv_out = nn.Conv2d(blockOut[0], OutChannels, convOutKernel, padding: (convOutKernel - 1) / 2);
        RegisterComponents();
    }

    public UNet2DConditionConfig Config { get; }
    public int InChannels { get; }
    public int OutChannels { get; }

    /// <summary>Width of the text embeddings the cross-attention reads.</summary>
    public int CrossAttentionDim { get; }

    /// <summary>Reads <c>config.json</c> and the weights of a diffusers <c>unet</c> folder.</summary>
    public static UNet2DConditionModel FromPretrained(string dir, ScalarType dtype, Device device)
    {
        TorchRuntime.Initialize(device);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        return ModuleSetup.LoadPretrained(new UNet2DConditionModel(config), dir, dtype, device);
    }

    /// <summary>
    /// Noise prediction for <paramref name="sample"/> ([B, in_channels, H, W]) at
    /// <paramref name="timestep"/> (float; a scalar, [1] or [B]) conditioned on
    /// <paramref name="encoderHiddenStates"/> ([B, tokens, cross_attention_dim]). Inputs are cast to
    /// the module's dtype and device; the sinusoidal time features are computed in float32 first.
    /// </summary>
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var weight = conv_in.weight!;
        var dtype = weight.dtype;
        var device = weight.device;
        var x = sample.to(dtype, device);
        var context = encoderHiddenStates.to(dtype, device);
        long batch = x.shape[0];
        if (context.shape[0] != batch)
            throw new ArgumentException($"encoder_hidden_states has batch {context.shape[0]}, sample {batch}");

        var t = timestep.to(device).reshape(-1);
        if (t.shape[0] != batch)
        {
            if (t.shape[0] != 1) throw new ArgumentException($"timestep has {t.shape[0]} entries, sample batch {batch} (expected a scalar, 1 or {batch})");
            t = t.expand(batch);
        }

        // Divisible sizes upsample by 2; otherwise force each upsampler to its skip's size.
        long upFactor = 1L << _numUpsamplers;
        bool forwardUpsampleSize = x.shape[2] % upFactor != 0 || x.shape[3] % upFactor != 0;

        if (_centerInput) x = 2 * x - 1.0;

        var tEmb = TimestepFeatures.Sinusoidal(t, _timeProjDim, _flipSinToCos, _freqShift).to(dtype);
        var emb = time_embedding.forward(tEmb);
        var activatedEmb = nn.functional.silu(emb);

        x = conv_in.forward(x);
        var skips = new List<Tensor> { x };
        foreach (var block in down_blocks) x = block.Forward(x, activatedEmb, context, skips);

        x = mid_block.Forward(x, activatedEmb, context);

        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            bool final = i == up_blocks.Count - 1;
            long[]? size = null;
            if (!final && forwardUpsampleSize)
            {
                if (skips.Count <= block.NumResnets) throw new InvalidOperationException("not enough skip connections for the up blocks");
                size = skips[skips.Count - 1 - block.NumResnets].shape[2..];
            }
            var next = block.Forward(x, skips, activatedEmb, context, size);
            x.Dispose();
            x = next;
        }

        x = conv_out.forward(nn.functional.silu(conv_norm_out.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The <c>config.json</c> fields of a diffusers <c>UNet2DConditionModel</c> (per-block values expanded to one
/// entry per block). <see cref="From"/> rejects every key this port does not implement.
/// </summary>
public sealed record UNet2DConditionConfig(
    string Source, int InChannels, int OutChannels, int[] BlockOutChannels, string[] DownBlockTypes, string[] UpBlockTypes,
    int[] LayersPerBlock, int[] CrossAttentionDims, int[] AttentionHeads, int[] TransformerLayersPerBlock, int NormNumGroups,
    double NormEps, bool UseLinearProjection, int DownsamplePadding, double MidBlockScaleFactor, int ConvInKernel, int ConvOutKernel,
    bool FlipSinToCos, double FreqShift, bool CenterInputSample, int TimeEmbeddingDim)
{
    public static UNet2DConditionConfig From(ModelConfig config)
    {
        var src = config.Source;
        if (config.Has("_class_name") && config.String("_class_name") != "UNet2DConditionModel")
            throw new NotSupportedException($"{src}: '_class_name' is '{config.String("_class_name")}', expected UNet2DConditionModel");
        CheckStructure(config);

        var blockOut = config.Ints("block_out_channels");
        int n = blockOut.Length;
        if (n == 0) throw new InvalidDataException($"{src}: 'block_out_channels' is empty");
        var downTypes = config.Strings("down_block_types");
        var upTypes = config.Strings("up_block_types");
        if (downTypes.Length != n) throw new InvalidDataException($"{src}: 'down_block_types' has {downTypes.Length} entries, 'block_out_channels' {n}");
        if (upTypes.Length != n) throw new InvalidDataException($"{src}: 'up_block_types' has {upTypes.Length} entries, 'block_out_channels' {n}");
        foreach (var t in downTypes)
            if (t is not ("CrossAttnDownBlock2D" or "DownBlock2D"))
                throw new NotSupportedException($"{src}: 'down_block_types' entry '{t}' is not supported (CrossAttnDownBlock2D, DownBlock2D)");
        foreach (var t in upTypes)
            if (t is not ("CrossAttnUpBlock2D" or "UpBlock2D"))
                throw new NotSupportedException($"{src}: 'up_block_types' entry '{t}' is not supported (CrossAttnUpBlock2D, UpBlock2D)");

        int inChannels = config.Int("in_channels", 4);
        int outChannels = config.Int("out_channels", 4);
        int[] layersPerBlock = config.Has("layers_per_block") ? config.IntOrInts("layers_per_block", n) : Enumerable.Repeat(2, n).ToArray();
        int[] crossDim = config.Has("cross_attention_dim") ? config.IntOrInts("cross_attention_dim", n) : Enumerable.Repeat(1280, n).ToArray();
        // Legacy naming: in SD 1.x configs attention_head_dim is the number of heads.
        string headsKey = config.Has("num_attention_heads") ? "num_attention_heads" : "attention_head_dim";
        int[] heads = config.Has(headsKey) ? config.IntOrInts(headsKey, n) : Enumerable.Repeat(8, n).ToArray();
        int[] transformerLayers = TransformerLayers(config, n);
        foreach (var (key, arr) in new[] { ("layers_per_block", layersPerBlock), ("cross_attention_dim", crossDim), (headsKey, heads), ("transformer_layers_per_block", transformerLayers) })
            if (arr.Length != n) throw new InvalidDataException($"{src}: '{key}' has {arr.Length} entries, 'block_out_channels' {n}");
        int groups = config.Int("norm_num_groups", 32);
        double eps = config.Double("norm_eps", 1e-5);
        bool linearProj = config.Bool("use_linear_projection", false);
        int downPadding = config.Int("downsample_padding", 1);
        double midScale = config.Double("mid_block_scale_factor", 1.0);
        int convInKernel = config.Int("conv_in_kernel", 3), convOutKernel = config.Int("conv_out_kernel", 3);
        if (convInKernel % 2 == 0) throw new NotSupportedException($"{src}: 'conv_in_kernel' must be odd (got {convInKernel})");
        if (convOutKernel % 2 == 0) throw new NotSupportedException($"{src}: 'conv_out_kernel' must be odd (got {convOutKernel})");
        bool flipSinToCos = config.Bool("flip_sin_to_cos", true);
        double freqShift = config.Double("freq_shift", 0);
        bool centerInput = config.Bool("center_input_sample", false);
        int timeEmbedDim = config.Has("time_embedding_dim") ? config.Int("time_embedding_dim") : blockOut[0] * 4;
        config.RejectUnsupported(Informational, OnlyValues);
        return new UNet2DConditionConfig(src, inChannels, outChannels, blockOut, downTypes, upTypes, layersPerBlock, crossDim, heads,
            transformerLayers, groups, eps, linearProj, downPadding, midScale, convInKernel, convOutKernel, flipSinToCos, freqShift,
            centerInput, timeEmbedDim);
    }

    private static int[] TransformerLayers(ModelConfig config, int n)
    {
        if (!config.Has("transformer_layers_per_block")) return Enumerable.Repeat(1, n).ToArray();
        var raw = config.Raw("transformer_layers_per_block")!.Value;
        if (raw.ValueKind == JsonValueKind.Array && raw.EnumerateArray().Any(e => e.ValueKind == JsonValueKind.Array))
            throw new NotSupportedException($"{config.Source}: 'transformer_layers_per_block' with per-layer arrays is not supported");
        return config.IntOrInts("transformer_layers_per_block", n);
    }

    private static void CheckStructure(ModelConfig c)
    {
        var src = c.Source;
        if (c.Has("only_cross_attention"))
        {
            var v = c.Raw("only_cross_attention")!.Value;
            bool any = v.ValueKind == JsonValueKind.True ||
                       (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().Any(e => e.ValueKind == JsonValueKind.True));
            if (any) throw new NotSupportedException($"{src}: 'only_cross_attention' = {v.GetRawText()} is not supported (only false)");
        }
        void RequireValue(string key, string expected)
        {
            if (c.Has(key) && c.String(key) != expected)
                throw new NotSupportedException($"{src}: '{key}' = \"{c.String(key)}\" is not supported (only \"{expected}\")");
        }
        RequireValue("act_fn", "silu");
        RequireValue("time_embedding_type", "positional");
        RequireValue("resnet_time_scale_shift", "default");
        RequireValue("attention_type", "default");
        RequireValue("mid_block_type", "UNetMidBlock2DCrossAttn");
    }

    /// <summary>Keys the constructor does not read: each may only hold the value of the SD 1.x structure.</summary>
    private static readonly Dictionary<string, object?[]> OnlyValues = new(StringComparer.Ordinal)
    {
        ["class_embed_type"] = [null], ["num_class_embeds"] = [null], ["addition_embed_type"] = [null],
        ["encoder_hid_dim"] = [null], ["encoder_hid_dim_type"] = [null], ["time_cond_proj_dim"] = [null],
        ["time_embedding_act_fn"] = [null], ["timestep_post_act"] = [null], ["cross_attention_norm"] = [null],
        ["reverse_transformer_layers_per_block"] = [null], ["projection_class_embeddings_input_dim"] = [null],
        ["dual_cross_attention"] = [false], ["resnet_skip_time_act"] = [false],
        ["mid_block_only_cross_attention"] = [null, false], ["class_embeddings_concat"] = [false],
    };

    /// <summary>
    /// Keys that do not change this structure's output: <c>sample_size</c> (a default resolution),
    /// <c>upcast_attention</c> (diffusers' default scaled-dot-product processor ignores it),
    /// <c>resnet_out_scale_factor</c> (unused by these block types), and the addition-embedding
    /// sizes that only matter when <c>addition_embed_type</c> is set.
    /// </summary>
    private static readonly string[] Informational =
        ["sample_size", "upcast_attention", "resnet_out_scale_factor", "addition_embed_type_num_heads", "addition_time_embed_dim"];
}
