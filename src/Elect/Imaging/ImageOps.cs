namespace Elect.Imaging;

/// <summary>Pillow's <c>ImageOps.fit</c> and the ELECT reference's <c>image_resize</c> preprocessing.</summary>
public static class ImageOps
{
    /// <summary>
    /// Pillow's <c>ImageOps.fit(image, (width, height), method=LANCZOS)</c> (bleed 0, centring (0.5, 0.5)): the largest
    /// centred region of the image with the output's aspect ratio (fractional, in double precision) is resampled to
    /// width x height with <see cref="Lanczos"/> (no separate crop; the region is Pillow's <c>box</c>).
    /// </summary>
    public static RgbImage Fit(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        var (l, t, r, b) = FitBox(image.Width, image.Height, width, height);
        return Lanczos.Resize(image, width, height, l, t, r, b);
    }

    /// <summary>The source box <c>(left, top, right, bottom)</c> that <c>ImageOps.fit</c> passes to <c>Image.resize</c>.</summary>
    public static (double Left, double Top, double Right, double Bottom) FitBox(int imageWidth, int imageHeight, int width, int height)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"height and width must be > 0 (got {width}x{height})");
        const double centeringX = 0.5, centeringY = 0.5;
        double liveW = imageWidth - 0.0, liveH = imageHeight - 0.0;
        double liveRatio = liveW / liveH;
        double outputRatio = (double)width / height;
        double cropW, cropH;
        if (liveRatio == outputRatio) { cropW = liveW; cropH = liveH; }
        else if (liveRatio >= outputRatio) { cropW = outputRatio * liveH; cropH = liveH; }
        else { cropW = liveW; cropH = liveW / outputRatio; }
        double cropLeft = 0.0 + (liveW - cropW) * centeringX;
        double cropTop = 0.0 + (liveH - cropH) * centeringY;
        return (cropLeft, cropTop, cropLeft + cropW, cropTop + cropH);
    }

    /// <summary>
    /// The output size of the reference's <c>image_resize(image, resolution)</c> (ELECT <c>utils.py</c>), in the same
    /// double-precision steps:
    /// <code>
    /// factor = resolution / max(w, h)
    /// factor = ceil(min(w, h) * factor / 64) * 64 / min(w, h)
    /// W = floor(w * factor / 64) * 64;  H = floor(h * factor / 64) * 64
    /// </code>
    /// i.e. the SHORTER side is scaled to the next multiple of 64 at or above what fitting the longer side to
    /// <paramref name="resolution"/> would give, the longer side follows at that scale and is floored to a multiple of 64
    /// (so it can exceed <paramref name="resolution"/>: 300x200 at 512 gives 576x384). Floating-point rounding can floor a
    /// side one multiple of 64 lower, as in the reference.
    /// </summary>
    /// <exception cref="ArgumentException">a side comes out 0 (Pillow would refuse to resize).</exception>
    public static (int Width, int Height) ImageResizeSize(int width, int height, int resolution = 512)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"image size must be positive (got {width}x{height})");
        if (resolution < 1) throw new ArgumentException($"resolution must be positive (got {resolution})");
        int mn = Math.Min(width, height), mx = Math.Max(width, height);
        double factor = (double)resolution / mx;
        long k = (long)Math.Ceiling(mn * factor / 64);
        factor = (double)(k * 64) / mn;
        int w = (int)Math.Floor(width * factor / 64) * 64;
        int h = (int)Math.Floor(height * factor / 64) * 64;
        if (w < 1 || h < 1)
            throw new ArgumentException($"image_resize of a {width}x{height} image at resolution {resolution} gives {w}x{h}");
        return (w, h);
    }

    /// <summary>
    /// The ELECT reference's preprocessing, <c>image_resize(image, resolution)</c> from <c>utils.py</c>, applied to every input
    /// (after <c>Image.open(path).convert("RGB")</c>) before editing: the size from <see cref="ImageResizeSize"/>, then
    /// <c>ImageOps.fit(image, (W, H), method=Image.Resampling.LANCZOS)</c> (<see cref="Fit"/>): a centred crop to the
    /// target aspect ratio and a Pillow-exact Lanczos resample. Both sides of the result are multiples of 64.
    /// </summary>
    public static RgbImage ImageResize(RgbImage image, int resolution = 512)
    {
        ArgumentNullException.ThrowIfNull(image);
        var (w, h) = ImageResizeSize(image.Width, image.Height, resolution);
        return Fit(image, w, h);
    }
}
