using Elect.Imaging;
using Elect.Models.Autoencoders;
using Elect.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines;

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
    /// One raw model evaluation of a batch laid out in the branch order of the condition's family (built by its
    /// <see cref="FamilyConditioning.Predict"/>: [3n, C_lat + C_img, h, w] in the model dtype) at
    /// <paramref name="timestep"/> (a 0-d float32 tensor on the model's device, so that no host-to-device copy
    /// happens inside the loop); returns the raw model output [3n, C_lat, h, w].
    /// </summary>
    public abstract Tensor Forward(EditCondition condition, Tensor modelInput, Tensor timestep);

    /// <summary>
    /// The engine's one model call per step and chunk: the guided prediction of n candidates from their scaled
    /// latents [n, C_lat, h, w] (model dtype). The condition's family builds its branch batch, this model evaluates
    /// it (<see cref="Forward"/>), and the family's guidance formula combines the branches.
    /// </summary>
    public GuidedPrediction PredictGuided(EditCondition condition, Tensor scaledLatents, Tensor timestep, float gText, float gImage) =>
        condition.Conditioning.Predict(scaledLatents, input => Forward(condition, input, timestep), gText, gImage);

    /// <summary>Decodes final / estimated latents (model space) to images [n,3,H,W] in [-1,1], float32.</summary>
    public abstract Tensor DecodeLatents(Tensor latents);

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
