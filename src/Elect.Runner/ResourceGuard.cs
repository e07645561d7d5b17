using Elect.Imaging;
using Elect.Modeling;
using Elect.Pipelines;
using static TorchSharp.torch;

namespace Elect.Runner;

/// <summary>
/// Bounds on the resized image, checked before any model work so that an absurd request fails in
/// milliseconds instead of filling a shared machine's memory. The defaults (1 MP, aspect 8:1) keep
/// SD 1.5 / SD3 editing of N = 10 candidates within a 24 GB GPU (micro-batched where needed).
/// </summary>
public sealed record ResourceLimits
{
    /// <summary>Most pixels (width x height) of the resized image.</summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>Largest ratio of the resized image's longer side to its shorter.</summary>
    public double MaxAspect { get; init; } = DefaultMaxAspect;

    public const long DefaultMaxPixels = 1 << 20;
    public const double DefaultMaxAspect = 8;

    public void Validate()
    {
        if (MaxPixels < 4096) throw new ArgumentOutOfRangeException(nameof(MaxPixels), $"--max-pixels must be at least 4096 (64x64), got {MaxPixels}");
        if (!double.IsFinite(MaxAspect) || MaxAspect < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxAspect), $"--max-aspect must be a finite number >= 1, got {MaxAspect}");
    }

    /// <summary>
    /// The size <see cref="ImageOps.ImageResize"/> gives a <paramref name="width"/> x <paramref name="height"/> image at
    /// <paramref name="resolution"/>, or an exception naming the limit it breaks (<paramref name="name"/>: the input's name).
    /// </summary>
    public (int Width, int Height) CheckImage(int width, int height, int resolution, string name)
    {
        Validate();
        var (w, h) = ImageOps.ImageResizeSize(width, height, resolution);
        long pixels = (long)w * h;
        if (pixels > MaxPixels)
            throw new ArgumentException($"{name} ({width}x{height}): --resolution {resolution} gives a {w}x{h} image ({pixels / 1e6:F1} MP), " +
                                        $"above --max-pixels {MaxPixels} (lower --resolution, or raise --max-pixels if the device has the memory)");
        double aspect = (double)Math.Max(w, h) / Math.Min(w, h);
        if (aspect > MaxAspect)
            throw new ArgumentException($"{name} ({width}x{height}): --resolution {resolution} gives a {w}x{h} image, aspect ratio {aspect:0.#}:1, " +
                                        $"above --max-aspect {MaxAspect:0.##} (crop the image, or raise --max-aspect)");
        return (w, h);
    }
}

/// <summary>How one edit will be batched, and the memory estimate behind it.</summary>
public sealed record MemoryPlan(int MaxBatch, int MaxDecodeBatch, long EstimateBytes, long? AvailableBytes, string Explanation)
{
    /// <summary>Whether the plan batches less than was asked (micro-batching: same outputs, slower).</summary>
    public bool MicroBatched { get; init; }
}

/// <summary>
/// A deliberately simple, conservative estimate of an edit's peak extra memory, for refusing absurd
/// requests before compute:
/// <code>
/// denoiser = 3·b · latent pixels · DenoiserBytesPerLatentPixel · element size   (b candidates per call, 3 branches)
/// decoder  = d · image pixels · DecoderBytesPerImagePixel · element size        (d images per decode call)
/// peak     = max(denoiser, decoder)
/// </code>
/// The weights are already loaded when the free memory is read, so they are not counted again. The
/// constants are rounded up from SD 1.5 at 512x512 (about 0.3 GB of fp16 activations per image in a
/// UNet call, about 1.5 GB per image in a VAE decode). When the peak exceeds the free memory the
/// candidates per call (and images per decode) are reduced; when even one does not fit the edit is refused.
/// </summary>
public static class MemoryEstimate
{
    public const double DenoiserBytesPerLatentPixel = 40_000;
    public const double DecoderBytesPerImagePixel = 3_000;

    public static long Denoiser(int candidatesPerCall, long latentPixels, int elementSize) =>
        (long)(3.0 * candidatesPerCall * latentPixels * DenoiserBytesPerLatentPixel * elementSize);

    public static long Decoder(int imagesPerCall, long imagePixels, int elementSize) =>
        (long)(imagesPerCall * imagePixels * DecoderBytesPerImagePixel * elementSize);

    /// <summary>
    /// Plans the batching of <paramref name="candidates"/> candidates on a <paramref name="width"/> x <paramref name="height"/>
    /// image with <paramref name="availableBytes"/> free (null: unknown, nothing is changed).
    /// <paramref name="maxDecodeBatch"/> is the decode batch the engine would use (null: all candidates).
    /// </summary>
    /// <exception cref="InvalidOperationException">not even one candidate per call fits.</exception>
    public static MemoryPlan Plan(int candidates, int? maxBatch, int? maxDecodeBatch, int width, int height, int downsample,
                                  ScalarType dtype, long? availableBytes, string deviceName)
    {
        int element = dtype is ScalarType.Float16 or ScalarType.BFloat16 ? 2 : 4;
        long latentPixels = (long)(width / downsample) * (height / downsample);
        long imagePixels = (long)width * height;
        int batch = Math.Min(candidates, maxBatch ?? candidates);
        int decode = Math.Min(candidates, maxDecodeBatch ?? candidates);
        long Estimate(int b, int d) => Math.Max(Denoiser(b, latentPixels, element), Decoder(d, imagePixels, element));
        static string Gb(long bytes) => WeightFootprint.Gb(bytes);
        long estimate = Estimate(batch, decode);
        string How(int b, int d) => $"{width}x{height} image, {(element == 2 ? 16 : 32)}-bit: {b} candidate(s) per model call ~{Gb(Denoiser(b, latentPixels, element))}, " +
                                    $"{d} image(s) per decode ~{Gb(Decoder(d, imagePixels, element))}";
        if (availableBytes is not { } free)
            return new MemoryPlan(batch, decode, estimate, null, $"estimated peak {Gb(estimate)} ({How(batch, decode)}); free memory unknown");
        if (estimate <= free)
            return new MemoryPlan(batch, decode, estimate, free, $"estimated peak {Gb(estimate)} ({How(batch, decode)}), {Gb(free)} free on {deviceName}");
        if (Estimate(1, 1) > free)
            throw new InvalidOperationException(
                $"not enough memory: the estimated peak with one candidate per model call is {Gb(Estimate(1, 1))} ({How(1, 1)}), " +
                $"above the {Gb(free)} free on {deviceName}; lower --resolution or free memory");
        int b1 = batch, d1 = decode;
        while (b1 > 1 && Denoiser(b1, latentPixels, element) > free) b1--;
        while (d1 > 1 && Decoder(d1, imagePixels, element) > free) d1--;
        return new MemoryPlan(b1, d1, Estimate(b1, d1), free,
            $"estimated peak {Gb(estimate)} ({How(batch, decode)}) exceeds the {Gb(free)} free on {deviceName}; " +
            $"micro-batching: {b1} candidate(s) per model call, {d1} image(s) per decode (~{Gb(Estimate(b1, d1))})")
        { MicroBatched = true };
    }
}

/// <summary>The check before a model is loaded: its weights alone must fit the memory of the device they load to.</summary>
public static class WeightMemory
{
    /// <summary>
    /// The weights' size at the request's dtype (<see cref="ModelFamily.WeightBytes"/>; null when it cannot be read from
    /// the files, e.g. the demo model or a missing file that the load then reports).
    /// </summary>
    /// <exception cref="InvalidOperationException">the weights exceed the free memory of the request's device.</exception>
    public static long? Check(ModelFamily family, FamilyLoadRequest request) =>
        Check(family, request, MemoryProbe.AvailableBytes(request.Device), MemoryProbe.AvailableName(request.Device));

    /// <summary>The same against a given amount of free memory on <paramref name="deviceName"/>.</summary>
    /// <exception cref="InvalidOperationException">the weights exceed <paramref name="availableBytes"/>.</exception>
    public static long? Check(ModelFamily family, FamilyLoadRequest request, long? availableBytes, string deviceName)
    {
        ArgumentNullException.ThrowIfNull(family);
        ArgumentNullException.ThrowIfNull(request);
        var bytes = family.WeightBytes(request);
        if (bytes is not { } need || availableBytes is not { } free || need <= free) return bytes;
        var hint = request.DType == ScalarType.Float32
            ? "use --dtype bf16 (half the memory; fp16 on a GPU), a device with more memory, or free memory"
            : "use a device with more memory or free memory";
        throw new InvalidOperationException(
            $"not enough memory for the {family.Name} weights: {WeightFootprint.Gb(need)} at {request.DType} (from the checkpoint's tensors), " +
            $"above the {WeightFootprint.Gb(free)} free on {deviceName}; {hint}");
    }
}
