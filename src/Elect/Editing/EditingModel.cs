using Elect.Imaging;
using static TorchSharp.torch;

namespace Elect.Editing;

/// <summary>
/// What one edit needs from an editing model, computed once per (image, instruction): the
/// conditioning the model reads, the image latents concatenated to the noisy latents, and the
/// decoded input image the BIS is measured against.
/// </summary>
public abstract class EditCondition : IDisposable
{
    /// <summary>Image-conditioning latents [1, C_img, h, w] in the model dtype (for the unconditional branch they are zeros).</summary>
    public required Tensor ImageLatents { get; init; }

    /// <summary>decode(image latents) [1, 3, H, W] in [-1, 1], float32: the reference the BIS compares against.</summary>
    public required Tensor DecodedInput { get; init; }

    public long LatentHeight => ImageLatents.shape[2];
    public long LatentWidth => ImageLatents.shape[3];
    public long ImageHeight => DecodedInput.shape[2];
    public long ImageWidth => DecodedInput.shape[3];

    private readonly Dictionary<long, Tensor> _imageCondCache = [];

    /// <summary>
    /// The image conditioning for a batch of n candidates laid out as [text×n, image×n, uncond×n]:
    /// [image latents ×2n, zeros ×n] (cached per n).
    /// </summary>
    public Tensor ImageConditionFor(long n)
    {
        if (_imageCondCache.TryGetValue(n, out var t)) return t;
        using var img = ImageLatents.expand(2 * n, -1, -1, -1);
        using var zeros = zeros_like(ImageLatents).expand(n, -1, -1, -1);
        t = cat([img, zeros], 0).DetachFromDisposeScope();   // cached across steps: owned by this condition
        _imageCondCache[n] = t;
        return t;
    }

    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        ImageLatents.Dispose();
        DecodedInput.Dispose();
        foreach (var t in _imageCondCache.Values) t.Dispose();
        _imageCondCache.Clear();
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
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

    protected abstract void Dispose(bool disposing);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }
}
