using Elect.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Elect.Models.Autoencoders;

/// <summary>
/// diffusers <c>AutoencoderKL</c> (SD 1.x / SD3 VAEs). State-dict keys equal diffusers':
/// <c>encoder.*</c>, <c>decoder.*</c>, optional <c>quant_conv</c> / <c>post_quant_conv</c>.
/// <see cref="Encode"/> gives the diagonal-Gaussian posterior; <see cref="Decode"/> takes raw
/// latents (the caller undoes scaling / shift).
/// </summary>
public sealed class AutoencoderKL : nn.Module<Tensor, Tensor>
{
    private readonly VaeEncoder encoder;
    private readonly VaeDecoder decoder;
    private readonly Conv2d? quant_conv;
    private readonly Conv2d? post_quant_conv;

    public AutoencoderKL(ModelConfig config) : this(AutoencoderKLConfig.From(config)) { }

    public AutoencoderKL(AutoencoderKLConfig config) : base(nameof(AutoencoderKL))
    {
        Config = config;
        var (blockOut, inCh, outCh, layers, groups, midAttn) = (config.BlockOutChannels, config.InChannels, config.OutChannels, config.LayersPerBlock, config.NormNumGroups, config.MidBlockAddAttention);
        LatentChannels = config.LatentChannels;
        ScalingFactor = config.ScalingFactor;
        ShiftFactor = config.ShiftFactor;
        ForceUpcast = config.ForceUpcast;
        DownsampleFactor = 1 << (blockOut.Length - 1);
        var (quant, postQuant) = (config.UseQuantConv, config.UsePostQuantConv);

        encoder = new VaeEncoder(inCh, LatentChannels, blockOut, layers, groups, midAttn);
        decoder = new VaeDecoder(LatentChannels, outCh, blockOut, layers, groups, midAttn);
        if (quant) quant_conv = nn.Conv2d(2 * LatentChannels, 2 * LatentChannels, 1);
        if (postQuant) post_quant_conv = nn.Conv2d(LatentChannels, LatentChannels, 1);
        RegisterComponents();
    }

    public AutoencoderKLConfig Config { get; }

    /// <summary><c>scaling_factor</c>: latents for the denoiser are <c>(z - shift) * scaling</c>.</summary>
    public double ScalingFactor { get; }

    /// <summary><c>shift_factor</c> (SD3 VAEs), null when the config has none.</summary>
    public double? ShiftFactor { get; }

    /// <summary><c>force_upcast</c>: diffusers runs this VAE in float32 even in half-precision pipelines.</summary>
    public bool ForceUpcast { get; }

    public int LatentChannels { get; }

    /// <summary>Image size / latent size: 2^(len(block_out_channels) - 1).</summary>
    public int DownsampleFactor { get; }

    /// <summary>Reads <c>config.json</c> and the weights of a diffusers <c>vae</c> folder.</summary>
    public static AutoencoderKL FromPretrained(string dir, ScalarType dtype, Device device)
    {
        TorchRuntime.Initialize(device);
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        return ModuleSetup.LoadPretrained(new AutoencoderKL(config), dir, dtype, device, rename: LegacyAttentionKey);
    }

    /// <summary>
    /// VAE folders saved before diffusers 0.14 (e.g. timbrooks/instruct-pix2pix, MagicBrush) name the
    /// mid-block attention <c>query/key/value/proj_attn</c>; diffusers renames them on load to
    /// <c>to_q/to_k/to_v/to_out.0</c>, and so do we.
    /// </summary>
    public static string LegacyAttentionKey(string key)
    {
        int at = key.IndexOf(".attentions.", StringComparison.Ordinal);
        if (at < 0) return key;
        foreach (var (legacy, current) in new[] { (".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.") })
        {
            int i = key.IndexOf(legacy, at, StringComparison.Ordinal);
            if (i >= 0) return key[..i] + current + key[(i + legacy.Length)..];
        }
        return key;
    }

    /// <summary>
    /// Posterior of <paramref name="image"/> ([B, in_channels, H, W] in [-1, 1]; cast to the module's
    /// dtype and device): mean and standard deviation, each [B, latent_channels, H/f, W/f].
    /// </summary>
    public (Tensor Mean, Tensor Std) Encode(Tensor image)
    {
        using var scope = torch.NewDisposeScope();
        var moments = encoder.forward(ToModule(image));
        if (quant_conv is not null) moments = quant_conv.forward(moments);
        var parts = moments.chunk(2, dim: 1);
        var mean = parts[0];
        var logvar = parts[1].clamp(-30.0, 20.0);
        var std = (logvar * 0.5).exp();
        return (mean.contiguous().MoveToOuterDisposeScope(), std.MoveToOuterDisposeScope());
    }

    /// <summary>Decodes raw latents ([B, latent_channels, h, w], NOT scaled) to an image in about [-1, 1].</summary>
    public Tensor Decode(Tensor latents)
    {
        using var scope = torch.NewDisposeScope();
        var z = ToModule(latents);
        if (post_quant_conv is not null) z = post_quant_conv.forward(z);
        return decoder.forward(z).MoveToOuterDisposeScope();
    }

    /// <summary>Reconstruction: decode(posterior mean).</summary>
    public override Tensor forward(Tensor image)
    {
        var (mean, std) = Encode(image);
        using (mean)
        using (std)
            return Decode(mean);
    }

    private Tensor ToModule(Tensor x)
    {
        var w = encoder.InputWeight;
        return x.to(w.dtype, w.device);
    }
}

/// <summary>The <c>config.json</c> fields of a diffusers <c>AutoencoderKL</c>. <see cref="From"/> rejects every key this port does not implement.</summary>
public sealed record AutoencoderKLConfig(
    string Source, int InChannels, int OutChannels, int LatentChannels, int[] BlockOutChannels, int LayersPerBlock, int NormNumGroups,
    bool MidBlockAddAttention, double ScalingFactor, double? ShiftFactor, bool ForceUpcast, bool UseQuantConv, bool UsePostQuantConv)
{
    public static AutoencoderKLConfig From(ModelConfig config)
    {
        var src = config.Source;
        if (config.Has("_class_name") && config.String("_class_name") != "AutoencoderKL")
            throw new NotSupportedException($"{src}: '_class_name' is '{config.String("_class_name")}', expected AutoencoderKL");
        var blockOut = config.Ints("block_out_channels");
        if (blockOut.Length == 0) throw new InvalidDataException($"{src}: 'block_out_channels' is empty");
        var down = config.Has("down_block_types") ? config.Strings("down_block_types") : Enumerable.Repeat("DownEncoderBlock2D", blockOut.Length).ToArray();
        var up = config.Has("up_block_types") ? config.Strings("up_block_types") : Enumerable.Repeat("UpDecoderBlock2D", blockOut.Length).ToArray();
        if (down.Length != blockOut.Length || down.Any(t => t != "DownEncoderBlock2D"))
            throw new NotSupportedException($"{src}: 'down_block_types' must be {blockOut.Length} x DownEncoderBlock2D (got [{string.Join(", ", down)}])");
        if (up.Length != blockOut.Length || up.Any(t => t != "UpDecoderBlock2D"))
            throw new NotSupportedException($"{src}: 'up_block_types' must be {blockOut.Length} x UpDecoderBlock2D (got [{string.Join(", ", up)}])");
        var act = config.String("act_fn", "silu");
        if (act != "silu") throw new NotSupportedException($"{src}: 'act_fn' '{act}' is not supported (only silu)");
        int inCh = config.Int("in_channels", 3), outCh = config.Int("out_channels", 3);
        int layers = config.Int("layers_per_block", 1);
        int groups = config.Int("norm_num_groups", 32);
        int latentChannels = config.Int("latent_channels", 4);
        bool midAttn = config.Bool("mid_block_add_attention", true);
        double scaling = config.Double("scaling_factor", 0.18215);
        double? shift = config.Has("shift_factor") ? config.Double("shift_factor") : null;
        bool forceUpcast = config.Bool("force_upcast", true);
        bool quant = config.Bool("use_quant_conv", true), postQuant = config.Bool("use_post_quant_conv", true);
        // sample_size: a default resolution; latents_mean / latents_std: statistics for pipelines that
        // normalise latents with them (the model itself, like diffusers', never reads them)
        config.RejectUnsupported(["sample_size", "latents_mean", "latents_std"]);
        return new AutoencoderKLConfig(src, inCh, outCh, latentChannels, blockOut, layers, groups, midAttn, scaling, shift, forceUpcast, quant, postQuant);
    }
}
