using Elect.Imaging;
using Elect.Models.Autoencoders;
using Elect.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines;

/// <summary>
/// What one edit needs from an editing model, computed once per (image, instruction): the
/// prompt conditioning the denoiser reads, the image latents concatenated to the noisy latents,
/// and the decoded input image the BIS is measured against. Batches of n candidates are laid out
/// as [text×n, image×n, uncond×n]; the per-n conditioning tensors are built once and cached.
/// </summary>
public sealed class EditCondition : IDisposable
{
    /// <summary>Image-conditioning latents [1, C_img, h, w] in the model dtype (for the unconditional branch they are zeros).</summary>
    public required Tensor ImageLatents { get; init; }

    /// <summary>decode(image latents) [1, 3, H, W] in [-1, 1], float32: the reference the BIS compares against.</summary>
    public required Tensor DecodedInput { get; init; }

    /// <summary>
    /// Named prompt conditionings (e.g. "hidden", "pooled"): each the instruction's [1, ...] and the
    /// empty prompt's [1, ...] embedding. The text branch reads the first, the image-only and
    /// unconditional branches the second.
    /// </summary>
    public required IReadOnlyDictionary<string, (Tensor Instruction, Tensor Empty)> Prompts { get; init; }

    /// <summary>
    /// Whether the third branch (zero image latents) reads the instruction's conditioning (InstructDiffusion's
    /// text-only branch) instead of the empty prompt's (the unconditional branch of InstructPix2Pix-style models).
    /// </summary>
    public bool ThirdBranchUsesInstruction { get; init; }

    public long LatentHeight => ImageLatents.shape[2];
    public long LatentWidth => ImageLatents.shape[3];
    public long ImageHeight => DecodedInput.shape[2];
    public long ImageWidth => DecodedInput.shape[3];

    private readonly Dictionary<(string, long), Tensor> _cache = [];

    /// <summary>
    /// Makes the condition the sole owner of its tensors (detached from any dispose scope open while
    /// it was built), so a model can build it inside a scope that frees every temporary.
    /// </summary>
    public EditCondition Owned()
    {
        ImageLatents.DetachFromDisposeScope();
        DecodedInput.DetachFromDisposeScope();
        foreach (var (a, b) in Prompts.Values) { a.DetachFromDisposeScope(); b.DetachFromDisposeScope(); }
        return this;
    }

    /// <summary>The image conditioning of n candidates: [image latents ×2n, zeros ×n].</summary>
    public Tensor ImageConditionFor(long n) => Cached("image latents", n, () =>
    {
        using var zeros = zeros_like(ImageLatents);
        return Branches(n, ImageLatents, ImageLatents, zeros);
    });

    /// <summary>The named prompt conditioning of n candidates: [instruction ×n, empty ×n, empty (or instruction: <see cref="ThirdBranchUsesInstruction"/>) ×n].</summary>
    public Tensor PromptFor(string name, long n)
    {
        if (!Prompts.TryGetValue(name, out var p)) throw new KeyNotFoundException($"no prompt conditioning '{name}'");
        return Cached(name, n, () => Branches(n, p.Instruction, p.Empty, ThirdBranchUsesInstruction ? p.Instruction : p.Empty));
    }

    private Tensor Cached(string name, long n, Func<Tensor> build)
    {
        if (_cache.TryGetValue((name, n), out var t)) return t;
        t = build().DetachFromDisposeScope();   // reused across steps: owned by this condition, not a step's scope
        _cache[(name, n)] = t;
        return t;
    }

    private static Tensor Branches(long n, Tensor text, Tensor image, Tensor uncond)
    {
        Tensor Repeat(Tensor t) { var shape = t.shape.ToArray(); shape[0] = n; return t.expand(shape); }
        using var a = Repeat(text);
        using var b = Repeat(image);
        using var c = Repeat(uncond);
        return cat([a, b, c], 0);
    }

    public void Dispose()
    {
        ImageLatents.Dispose();
        DecodedInput.Dispose();
        foreach (var (a, b) in Prompts.Values) { a.Dispose(); b.Dispose(); }
        foreach (var t in _cache.Values) t.Dispose();
        _cache.Clear();
    }
}

/// <summary>
/// An instruction-guided editing model family (InstructPix2Pix-style three-way guidance). The ELECT
/// engine drives any family through this contract: everything family-specific (text encoders, the
/// denoiser, the VAE conventions, the scheduler) lives behind it.
/// </summary>
public abstract class EditingModel : IDisposable
{
    protected EditingModel(Device device, ScalarType dtype)
    {
        Device = device;
        DType = dtype;
    }

    /// <summary>Model family name (instructpix2pix, magicbrush, ultraedit).</summary>
    public abstract string Name { get; }

    public Device Device { get; }
    public ScalarType DType { get; }

    /// <summary>Channels of the noisy latents.</summary>
    public abstract int LatentChannels { get; }

    /// <summary>Image pixels per latent pixel along each side.</summary>
    public abstract int DownsampleFactor { get; }

    /// <summary>The reference's default text guidance for this family.</summary>
    public abstract float DefaultTextGuidance { get; }

    /// <summary>A fresh scheduler set for <paramref name="steps"/> inference steps.</summary>
    public abstract IDenoisingScheduler CreateScheduler(int steps);

    /// <summary>
    /// Encodes the instruction (and the empty unconditional prompt) and the image (already resized to
    /// multiples of the model's granularity). <paramref name="mask"/> is for families that take a mask image.
    /// </summary>
    public abstract EditCondition Prepare(RgbImage image, string instruction, RgbImage? mask = null);

    /// <summary>
    /// One model evaluation of a [3n, C_lat + C_img, h, w] input (model dtype) laid out as
    /// [text×n, image×n, uncond×n] at <paramref name="timestep"/> (a 0-d float32 tensor on the model's
    /// device, so that no host-to-device copy happens inside the loop); returns the raw model output
    /// [3n, C_lat, h, w].
    /// </summary>
    public abstract Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep);

    /// <summary>Decodes final / estimated latents (model space) to images [n,3,H,W] in [-1,1], float32.</summary>
    public abstract Tensor DecodeLatents(Tensor latents);

    /// <summary>
    /// Combines the three branch outputs [n, C, h, w] (text = instruction + image, image = empty prompt + image,
    /// third = zero image latents) into the guided prediction. Default: InstructPix2Pix's
    /// <c>third + g_t (text - image) + g_i (image - third)</c>.
    /// </summary>
    public virtual Tensor Guide(Tensor text, Tensor image, Tensor third, float gText, float gImage) =>
        third + gText * (text - image) + gImage * (image - third);

    /// <summary>
    /// Finished decoded images in [-1,1] to values in [0,1] whose 8-bit rounding is the reference's output, element
    /// by element (any layout). Default: diffusers' <c>clamp(x / 2 + 0.5, 0, 1)</c> (rounded to 8 bits later).
    /// </summary>
    public virtual Tensor ToUnitImages(Tensor decoded) => (decoded / 2 + 0.5).clamp(0, 1);

    /// <summary>
    /// <see cref="DecodeLatents"/> computed in float32 whatever the model dtype: the fallback when a half-precision
    /// decode overflows. The default is <see cref="DecodeLatents"/>.
    /// </summary>
    public virtual Tensor DecodeLatentsInFloat32(Tensor latents) => DecodeLatents(latents);

    protected abstract void Dispose(bool disposing);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// The part both families share: an AutoencoderKL whose posterior mode (unscaled, unshifted) is the
/// image conditioning, and whose decoder turns <c>latents / scaling_factor</c> (no shift, as both
/// reference pipelines do) into images.
/// </summary>
public abstract class VaeEditingModel : EditingModel
{
    protected VaeEditingModel(AutoencoderKL vae, Device device, ScalarType dtype) : base(device, dtype) => Vae = vae;

    public AutoencoderKL Vae { get; }

    public override int LatentChannels => Vae.LatentChannels;

    /// <summary>The VAE posterior mode of an image [1, C, h, w] in the model dtype.</summary>
    protected Tensor EncodeImage(RgbImage image)
    {
        using var noGrad = no_grad();
        using var pixels = image.ToTensor();
        using var onDevice = pixels.to(DType, Device);
        var (mean, std) = Vae.Encode(onDevice);
        std.Dispose();
        return mean;
    }

    /// <summary>decode(latents) without scaling: the input the BIS is measured against (float32).</summary>
    protected Tensor DecodeRaw(Tensor latents)
    {
        using var noGrad = no_grad();
        using var image = Vae.Decode(latents);
        return image.to(ScalarType.Float32);
    }

    /// <summary>Latents (model space) to the VAE decoder's input: <c>latents / scaling_factor</c> by default.</summary>
    protected virtual Tensor ScaleForDecode(Tensor latents) => latents / Vae.ScalingFactor;

    public override Tensor DecodeLatents(Tensor latents)
    {
        using var scaled = ScaleForDecode(latents).to(DType);
        return DecodeRaw(scaled);
    }

    /// <summary>Converts the VAE to float32 for this one decode and back (lossless for fp16/bf16 weights).</summary>
    public override Tensor DecodeLatentsInFloat32(Tensor latents)
    {
        if (DType == ScalarType.Float32) return DecodeLatents(latents);
        Vae.to(ScalarType.Float32);
        try
        {
            using var latents32 = latents.to(ScalarType.Float32);
            using var scaled = ScaleForDecode(latents32);
            return DecodeRaw(scaled);
        }
        finally
        {
            Vae.to(DType);
        }
    }
}
