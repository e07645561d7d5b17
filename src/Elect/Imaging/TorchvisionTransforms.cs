namespace Elect.Imaging;

/// <summary>
/// torchvision's transforms as they act on PIL images (torchvision.transforms.functional over PIL), for the
/// evaluations whose reference preprocesses with them: <c>Resize(int)</c> scales the shorter side with
/// <see cref="PilResample"/> (Pillow's own resize, so antialiased and fixed-point as Pillow computes it), <c>CenterCrop</c>
/// rounds its offsets as Python's <c>round</c> does (half to even) and zero-pads an image smaller than the crop,
/// <c>ToTensor</c> + <c>Normalize</c> are float32 operations in the same order (<c>v / 255</c>, then <c>(x - mean) / std</c>).
/// </summary>
public static class TorchvisionTransforms
{
    /// <summary>
    /// <c>transforms.Resize(size, interpolation)</c> with an int size on a PIL image: the shorter side becomes
    /// <paramref name="size"/>, the longer <c>int(size * long / short)</c> (a double division, truncated); an image whose
    /// shorter side is already <paramref name="size"/> is returned as is.
    /// </summary>
    public static RgbImage ResizeShorter(RgbImage image, int size, PilFilter filter = PilFilter.Bicubic)
    {
        ArgumentNullException.ThrowIfNull(image);
        var (w, h) = ShorterSideSize(image.Width, image.Height, size);
        return w == image.Width && h == image.Height ? image : PilResample.Resize(image, w, h, filter);
    }

    /// <summary>torchvision's <c>_compute_resized_output_size</c> for one int size: (width, height).</summary>
    public static (int Width, int Height) ShorterSideSize(int width, int height, int size)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"image size must be positive (got {width}x{height})");
        if (size < 1) throw new ArgumentException($"resize size must be positive (got {size})");
        bool wShort = width <= height;
        int s = wShort ? width : height, l = wShort ? height : width;
        int newLong = (int)((double)size * l / s);
        return wShort ? (size, newLong) : (newLong, size);
    }

    /// <summary>A centre crop's offset along one side, <c>int(round((length - crop) / 2))</c> (half to even), as torchvision and transformers compute it.</summary>
    public static int CenterCropOffset(int length, int crop) => (int)Math.Round((length - crop) / 2.0, MidpointRounding.ToEven);

    /// <summary>
    /// <c>transforms.CenterCrop(size)</c> (square): <c>top = int(round((h - size) / 2))</c>, <c>left</c> likewise; an image
    /// smaller than the crop is first padded with zeros, <c>(size - w) // 2</c> on the left/top and the rest on the right/bottom.
    /// </summary>
    public static RgbImage CenterCrop(RgbImage image, int size)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (size < 1) throw new ArgumentException($"crop size must be positive (got {size})");
        if (image.Width < size || image.Height < size)
        {
            int pl = image.Width < size ? (size - image.Width) / 2 : 0, pt = image.Height < size ? (size - image.Height) / 2 : 0;
            int pr = image.Width < size ? (size - image.Width + 1) / 2 : 0, pb = image.Height < size ? (size - image.Height + 1) / 2 : 0;
            var padded = new RgbImage(image.Width + pl + pr, image.Height + pt + pb);
            for (int y = 0; y < image.Height; y++)
                Array.Copy(image.Data, y * image.Width * 3, padded.Data, ((y + pt) * padded.Width + pl) * 3, image.Width * 3);
            image = padded;
            if (image.Width == size && image.Height == size) return image;
        }
        return image.Crop(CenterCropOffset(image.Width, size), CenterCropOffset(image.Height, size), size, size);
    }

    /// <summary><c>ToTensor()</c> then <c>Normalize(mean, std)</c>: CHW float32, <c>((v / 255f) - mean[c]) / std[c]</c> in single precision.</summary>
    public static float[] ToNormalizedChw(RgbImage image, ReadOnlySpan<float> mean, ReadOnlySpan<float> std)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (mean.Length != 3 || std.Length != 3) throw new ArgumentException("mean and std need 3 values");
        int hw = image.Width * image.Height;
        var buf = new float[3 * hw];
        for (int i = 0; i < hw; i++)
            for (int c = 0; c < 3; c++)
            {
                float x = image.Data[i * 3 + c] / 255f;
                x -= mean[c];
                buf[c * hw + i] = x / std[c];
            }
        return buf;
    }
}
