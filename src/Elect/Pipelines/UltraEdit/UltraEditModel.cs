using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Transformers;
using Elect.Schedulers;
using Elect.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines.UltraEdit;

/// <summary>
/// UltraEdit (SD3 rectified flow, InstructPix2Pix-style conditioning). Conventions of the ELECT
/// authors' UltraEdit pipeline: the three prompts use 77 tokens; the two CLIP penultimate hidden
/// states are concatenated on features, zero-padded to the T5 width and joined with the T5
/// embeddings along the sequence; pooled = the two CLIP projected embeddings concatenated; the
/// unconditional prompt is the empty string; image latents are the VAE posterior mode WITHOUT
/// shift or scaling; final latents are decoded as latents / scaling_factor WITHOUT the shift.
/// Checkpoints whose transformer takes extra mask channels get the mask image's latents
/// concatenated after the image latents (an all-white mask, i.e. "edit anywhere", when none is given).
/// </summary>
public sealed class UltraEditModel : VaeEditingModel
{
    private readonly ModelConfig _schedulerConfig;
    private readonly bool _takesMask;

    /// <summary>Text components; null for a model built without text encoding (benchmarks feed embeddings).</summary>
    public ClipTokenizer? Tokenizer { get; }
    public ClipTokenizer? Tokenizer2 { get; }
    public T5Tokenizer? Tokenizer3 { get; }
    public ClipTextModel? TextEncoder { get; }
    public ClipTextModel? TextEncoder2 { get; }

    /// <summary>Null when the checkpoint has no text_encoder_3 (T5 embeddings are then zeros, as diffusers does).</summary>
    public T5EncoderModel? TextEncoder3 { get; }
    public SD3Transformer2DModel Transformer { get; }

    /// <summary>Prompt length of all three encoders (the pipeline's tokenizer_max_length).</summary>
    public const int PromptLength = 77;

    private UltraEditModel(ClipTokenizer? tok1, ClipTokenizer? tok2, T5Tokenizer? tok3, ClipTextModel? te1, ClipTextModel? te2,
                           T5EncoderModel? te3, SD3Transformer2DModel transformer, AutoencoderKL vae, ModelConfig schedulerConfig,
                           Device device, ScalarType dtype) : base(vae, device, dtype)
    {
        Tokenizer = tok1; Tokenizer2 = tok2; Tokenizer3 = tok3;
        TextEncoder = te1; TextEncoder2 = te2; TextEncoder3 = te3;
        Transformer = transformer;
        _schedulerConfig = schedulerConfig;
        int lat = vae.LatentChannels;
        if (transformer.InChannels == 2 * lat) _takesMask = false;
        else if (transformer.InChannels == 3 * lat) _takesMask = true;
        else throw new InvalidDataException($"transformer/config.json: in_channels {transformer.InChannels} is neither 2x nor 3x the VAE's latent_channels {lat} (not an UltraEdit checkpoint)");
    }

    /// <summary>Loads a diffusers SD3 (UltraEdit) pipeline folder. A missing text_encoder_3 folder means T5 is left out (zeros), as diffusers does.</summary>
    public static UltraEditModel Load(string folder, Device device, ScalarType dtype)
    {
        var tok1 = ClipTokenizer.FromFolder(Path.Combine(folder, "tokenizer"));
        var tok2 = ClipTokenizer.FromFolder(Path.Combine(folder, "tokenizer_2"));
        var tok3 = T5Tokenizer.FromFolder(Path.Combine(folder, "tokenizer_3"));
        var te1 = ClipTextModel.FromPretrained(Path.Combine(folder, "text_encoder"), dtype, device);
        var te2 = ClipTextModel.FromPretrained(Path.Combine(folder, "text_encoder_2"), dtype, device);
        var t5dir = Path.Combine(folder, "text_encoder_3");
        var te3 = Directory.Exists(t5dir) ? T5EncoderModel.FromPretrained(t5dir, dtype, device) : null;
        var transformer = SD3Transformer2DModel.FromPretrained(Path.Combine(folder, "transformer"), dtype, device);
        var vae = AutoencoderKL.FromPretrained(Path.Combine(folder, "vae"), dtype, device);
        var sched = ModelConfig.Load(Path.Combine(folder, "scheduler", "scheduler_config.json"));
        return new UltraEditModel(tok1, tok2, tok3, te1, te2, te3, transformer, vae, sched, device, dtype);
    }

    /// <summary>Assembles a model from components (text encoding optional: see <see cref="PrepareWithEmbeddings"/>).</summary>
    public static UltraEditModel FromComponents(ClipTokenizer? tok1, ClipTokenizer? tok2, T5Tokenizer? tok3, ClipTextModel? te1,
        ClipTextModel? te2, T5EncoderModel? te3, SD3Transformer2DModel transformer, AutoencoderKL vae, ModelConfig schedulerConfig,
        Device device, ScalarType dtype) => new(tok1, tok2, tok3, te1, te2, te3, transformer, vae, schedulerConfig, device, dtype);

    public override string Name => "ultraedit";
    public override int DownsampleFactor => Vae.DownsampleFactor * Transformer.PatchSize;
    public override float DefaultTextGuidance => 7.0f;

    public override IDenoisingScheduler CreateScheduler(int steps)
    {
        var s = FlowMatchEulerDiscreteScheduler.FromConfig(_schedulerConfig);
        s.SetTimesteps(steps);
        return s;
    }

    /// <summary>
    /// The pipeline's prompt embeddings for a batch of prompts: ([B, 154, D_t5], [B, P1 + P2]).
    /// </summary>
    public (Tensor PromptEmbeds, Tensor Pooled) EncodePrompts(IReadOnlyList<string> prompts)
    {
        if (Tokenizer is null || Tokenizer2 is null || Tokenizer3 is null || TextEncoder is null || TextEncoder2 is null)
            throw new InvalidOperationException("this model was built without text encoders");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ids1 = Tokenizer.EncodeBatch(prompts).to(Device);
        var ids2 = Tokenizer2.EncodeBatch(prompts).to(Device);
        using var o1 = TextEncoder.call(ids1);
        using var o2 = TextEncoder2.call(ids2);
        var clip = cat([o1.PenultimateHiddenState, o2.PenultimateHiddenState], -1);
        Tensor t5;
        if (TextEncoder3 is not null)
            t5 = TextEncoder3.call(Tokenizer3.EncodeBatch(prompts, PromptLength).to(Device));
        else
            t5 = zeros([prompts.Count, PromptLength, Transformer.Config.JointAttentionDim], dtype: DType, device: Device);
        long pad = t5.shape[2] - clip.shape[2];
        if (pad < 0) throw new InvalidDataException($"CLIP features ({clip.shape[2]}) are wider than the T5 features ({t5.shape[2]})");
        clip = nn.functional.pad(clip, [0, pad]);
        var embeds = cat([clip.to(t5.dtype), t5], -2).to(DType);
        var pooled = cat([o1.TextEmbeds!, o2.TextEmbeds!], -1).to(DType);
        return (embeds.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope());
    }

    public override EditCondition Prepare(RgbImage image, string instruction, RgbImage? mask = null)
    {
        var (embeds, pooled) = EncodePrompts([instruction, ""]);
        using (embeds)
        using (pooled)
            return PrepareWithEmbeddings(image, embeds, pooled, mask);
    }

    /// <summary>
    /// Conditioning from given prompt embeddings: [2, 154, D] and pooled [2, P] for (instruction, empty prompt).
    /// </summary>
    public EditCondition PrepareWithEmbeddings(RgbImage image, Tensor embeds, Tensor pooled, RgbImage? mask = null)
    {
        if (mask is not null && !_takesMask)
            throw new NotSupportedException("this UltraEdit checkpoint's transformer takes no mask channels (in_channels = 2 x latent channels); drop the mask (Editor.Edit(mask))");
        using var scope = NewDisposeScope();
        var latents = EncodeImage(image);
        var decoded = DecodeRaw(latents);
        if (_takesMask)
        {
            using var maskLatents = EncodeImage(mask ?? RgbImage.Solid(image.Width, image.Height, 255, 255, 255));
            using var imageOnly = latents;
            latents = cat([imageOnly, maskLatents], 1);
        }
        using var e = embeds.to(DType, Device);
        using var p = pooled.to(DType, Device);
        return new EditCondition
        {
            DecodedInput = decoded,
            Conditioning = new UltraEditConditioning(latents, (e[0..1].clone(), e[1..2].clone()), (p[0..1].clone(), p[1..2].clone())),
            LatentHeight = latents.shape[2],
            LatentWidth = latents.shape[3],
        }.Owned();
    }

    public override Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep)
    {
        long n3 = modelInput.shape[0];
        using var noGrad = no_grad();
        using var t = timestep.expand(n3);
        var c = (UltraEditConditioning)condition.Conditioning;
        return Transformer.call(modelInput, c.HiddenStatesFor(n3 / 3), c.PooledFor(n3 / 3), t);
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        TextEncoder?.Dispose();
        TextEncoder2?.Dispose();
        TextEncoder3?.Dispose();
        Transformer.Dispose();
        Vae.Dispose();
    }
}
