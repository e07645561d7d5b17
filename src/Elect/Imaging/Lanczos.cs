namespace Elect.Imaging;

/// <summary>
/// Pillow's <c>Image.resize(size, Image.Resampling.LANCZOS, box)</c> for 8-bit images, bit-exact: <see cref="PilResample"/>
/// with <see cref="PilFilter.Lanczos"/> (the Lanczos-3 kernel <c>sinc(x)·sinc(x/3)</c> on <c>[-3,3)</c>, Pillow's
/// fixed-point two-pass path).
/// </summary>
public static class Lanczos
{
    /// <summary>Resizes the whole image.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height) => PilResample.Resize(image, width, height, PilFilter.Lanczos);

    /// <summary>Resizes the region <c>(left, top, right, bottom)</c> of the image (Pillow's <c>box</c>) to width x height.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height, double left, double top, double right, double bottom) =>
        PilResample.Resize(image, width, height, PilFilter.Lanczos, left, top, right, bottom);

    /// <summary>Resizes the whole grey image.</summary>
    public static GrayImage Resize(GrayImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        return PilResample.Resize(image, width, height, PilFilter.Lanczos, 0, 0, image.Width, image.Height);
    }

    /// <summary>Resizes the region <c>(left, top, right, bottom)</c> of the grey image to width x height.</summary>
    public static GrayImage Resize(GrayImage image, int width, int height, double left, double top, double right, double bottom) =>
        PilResample.Resize(image, width, height, PilFilter.Lanczos, left, top, right, bottom);
}
