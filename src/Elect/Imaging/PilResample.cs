namespace Elect.Imaging;

/// <summary>The Pillow resampling filters <see cref="PilResample"/> implements.</summary>
public enum PilFilter
{
    /// <summary><c>Image.Resampling.BICUBIC</c>: the cubic convolution kernel with <c>a = -0.5</c>, support 2
    /// (Pillow's default for <c>Image.resize</c> of RGB images since Pillow 7, and what torchvision's <c>Resize</c> applies to PIL images with <c>interpolation=BICUBIC</c>).</summary>
    Bicubic,

    /// <summary><c>Image.Resampling.LANCZOS</c>: <c>sinc(x)·sinc(x/3)</c> on <c>[-3,3)</c>, support 3.</summary>
    Lanczos,
}

/// <summary>
/// Pillow's <c>Image.resize(size, resample, box)</c> for 8-bit images, bit-exact (libImaging/Resample.c, unchanged in
/// this respect from Pillow 7 to 13):
/// <list type="bullet">
/// <item>The filter's kernel (<see cref="PilFilter"/>); its support is widened by the scale factor when reducing
/// (<c>filterscale = max(1, (in1-in0)/out)</c>), so reductions are antialiased; output pixel <c>i</c> is centred at
/// <c>in0 + (i+0.5)·scale</c> in source coordinates (pixel centres at +0.5).</item>
/// <item>Coefficients are computed in double, normalised to sum 1 per output pixel, then converted to fixed point with
/// 22 fraction bits (rounded half away from zero).</item>
/// <item>Two passes, horizontal first (only over the source rows the vertical pass needs), then vertical; each pass
/// accumulates in 32-bit integers from <c>1 &lt;&lt; 21</c>, shifts right by 22 and clips to [0,255], so the intermediate
/// image is 8-bit. A pass is skipped when its axis is unchanged.</item>
/// <item>The box is single precision (Pillow parses it as C floats). An integer box whose size equals the requested size is
/// a plain crop; the whole image at its own size is a copy.</item>
/// </list>
/// </summary>
public static class PilResample
{
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Resizes the whole image.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height, PilFilter filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Resize(image, width, height, filter, 0, 0, image.Width, image.Height);
    }

    /// <summary>Resizes the region <c>(left, top, right, bottom)</c> of the image (Pillow's <c>box</c>) to width x height.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height, PilFilter filter, double left, double top, double right, double bottom)
    {
        ArgumentNullException.ThrowIfNull(image);
        var data = ResizeBytes(image.Data, image.Width, image.Height, 3, width, height, filter, left, top, right, bottom);
        return new RgbImage(width, height, data);
    }

    /// <summary>Resizes the region <c>(left, top, right, bottom)</c> of the grey image to width x height.</summary>
    public static GrayImage Resize(GrayImage image, int width, int height, PilFilter filter, double left, double top, double right, double bottom)
    {
        ArgumentNullException.ThrowIfNull(image);
        var data = ResizeBytes(image.Data, image.Width, image.Height, 1, width, height, filter, left, top, right, bottom);
        return new GrayImage(width, height, data);
    }

    private static byte[] ResizeBytes(byte[] src, int inW, int inH, int ch, int outW, int outH, PilFilter filter,
        double left, double top, double right, double bottom)
    {
        if (outW < 1 || outH < 1) throw new ArgumentException($"height and width must be > 0 (got {outW}x{outH})");
        // Image.resize: same size and the whole image -> copy.
        if (outW == inW && outH == inH && left == 0 && top == 0 && right == inW && bottom == inH)
            return (byte[])src.Clone();
        float b0 = (float)left, b1 = (float)top, b2 = (float)right, b3 = (float)bottom;
        if (b0 < 0 || b1 < 0) throw new ArgumentException("box offset can't be negative");
        if (b2 > inW || b3 > inH) throw new ArgumentException("box can't exceed original image size");
        if (b2 - b0 < 0 || b3 - b1 < 0) throw new ArgumentException("box can't be empty");
        // _imaging.c: an integer box of exactly the requested size is a crop.
        if (b0 - (int)b0 == 0 && b2 - b0 == outW && b1 - (int)b1 == 0 && b3 - b1 == outH)
            return Crop(src, inW, ch, (int)b0, (int)b1, outW, outH);
        return Resample(src, inW, inH, ch, outW, outH, filter, b0, b1, b2, b3);
    }

    private static byte[] Crop(byte[] src, int inW, int ch, int x0, int y0, int w, int h)
    {
        var dst = new byte[w * h * ch];
        for (int y = 0; y < h; y++)
            Array.Copy(src, ((y0 + y) * inW + x0) * ch, dst, y * w * ch, w * ch);
        return dst;
    }

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    private static double Support(PilFilter f) => f switch
    {
        PilFilter.Bicubic => 2.0,
        PilFilter.Lanczos => 3.0,
        _ => throw new ArgumentOutOfRangeException(nameof(f), f, "unknown filter"),
    };

    private static double Kernel(PilFilter f, double x)
    {
        if (f == PilFilter.Lanczos) return -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;
        // bicubic_filter, a = -0.5
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>precompute_coeffs + normalize_coeffs_8bpc: per output pixel the first source index, the tap count and
    /// <paramref name="ksize"/> fixed-point weights.</summary>
    private static (int[] Bounds, int[] Weights, int KSize) Coefficients(int inSize, float in0, float in1, int outSize, PilFilter filter)
    {
        double scale = (double)(float)(in1 - in0) / outSize;
        double filterscale = scale < 1.0 ? 1.0 : scale;
        double support = Support(filter) * filterscale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * ksize];
        var k = new double[ksize];
        double inv = 1.0 / filterscale;
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = in0 + (xx + 0.5) * scale;
            double ww = 0.0;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            for (int x = 0; x < xmax; x++)
            {
                double w = Kernel(filter, (x + xmin - center + 0.5) * inv);
                k[x] = w;
                ww += w;
            }
            if (ww != 0.0)
                for (int x = 0; x < xmax; x++) k[x] /= ww;
            for (int x = 0; x < xmax; x++)
            {
                double v = k[x];
                weights[xx * ksize + x] = v < 0 ? (int)(-0.5 + v * (1 << PrecisionBits)) : (int)(0.5 + v * (1 << PrecisionBits));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (bounds, weights, ksize);
    }

    private static byte Clip8(int acc)
    {
        int v = acc >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    private static byte[] Resample(byte[] src, int inW, int inH, int ch, int outW, int outH, PilFilter filter, float b0, float b1, float b2, float b3)
    {
        bool needH = outW != inW || b0 != 0 || b2 != outW;
        bool needV = outH != inH || b1 != 0 || b3 != outH;
        var (bv, kv, ksv) = Coefficients(inH, b1, b3, outH, filter);
        int yFirst = bv[0];
        int yLast = bv[outH * 2 - 2] + bv[outH * 2 - 1];

        byte[] cur = src;
        int curW = inW, rowOffset = 0;
        const int Half = 1 << (PrecisionBits - 1);

        if (needH)
        {
            var (bh, kh, ksh) = Coefficients(inW, b0, b2, outW, filter);
            int rows = yLast - yFirst;
            var tmp = new byte[outW * Math.Max(rows, 0) * ch];
            for (int yy = 0; yy < rows; yy++)
            {
                int inRow = (yy + yFirst) * inW * ch, outRow = yy * outW * ch;
                for (int xx = 0; xx < outW; xx++)
                {
                    int xmin = bh[xx * 2], n = bh[xx * 2 + 1], kb = xx * ksh;
                    for (int c = 0; c < ch; c++)
                    {
                        int ss = Half;
                        for (int x = 0; x < n; x++) ss += src[inRow + (x + xmin) * ch + c] * kh[kb + x];
                        tmp[outRow + xx * ch + c] = Clip8(ss);
                    }
                }
            }
            cur = tmp; curW = outW; rowOffset = yFirst;
        }

        if (!needV)
        {
            return ReferenceEquals(cur, src) ? (byte[])src.Clone() : cur;
        }

        var dst = new byte[curW * outH * ch];
        for (int yy = 0; yy < outH; yy++)
        {
            int ymin = bv[yy * 2] - rowOffset, n = bv[yy * 2 + 1], kb = yy * ksv;
            int outRow = yy * curW * ch;
            for (int xx = 0; xx < curW; xx++)
            {
                for (int c = 0; c < ch; c++)
                {
                    int ss = Half;
                    for (int y = 0; y < n; y++) ss += cur[((y + ymin) * curW + xx) * ch + c] * kv[kb + y];
                    dst[outRow + xx * ch + c] = Clip8(ss);
                }
            }
        }
        return dst;
    }
}
