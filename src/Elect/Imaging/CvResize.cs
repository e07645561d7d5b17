namespace Elect.Imaging;

/// <summary>
/// OpenCV's <c>cv2.resize(img, (width, height))</c> (default <c>INTER_LINEAR</c>) for a single-channel uint8 image, as the
/// x86 builds of OpenCV 4 compute it (resize.cpp, <c>resizeGeneric_</c> with the fixed-point path):
/// <list type="bullet">
/// <item><c>scale = 1 / (dst / src)</c> in double; for output index <c>d</c>: <c>f = (float)((d + 0.5)·scale - 0.5)</c>,
/// <c>s = floor(f)</c>, <c>f -= s</c>; weights <c>round((1-f)·2048)</c>, <c>round(f·2048)</c> (11 fraction bits).</item>
/// <item>Columns: a source index left of 0 or at/after the last column is clamped with weight (2048, 0).
/// Rows: the source rows are clamped but the weights are NOT (so a border row is weighted e.g. 896 + 1152 of itself).</item>
/// <item>Horizontal pass exact in 32-bit integers; vertical pass <c>(((b0·(S0&gt;&gt;4))&gt;&gt;16) + ((b1·(S1&gt;&gt;4))&gt;&gt;16) + 2) &gt;&gt; 2</c>
/// (the SIMD kernel's rounding, which the uchar specialisation also uses for the tail).</item>
/// <item>An exact 2x reduction on both axes is routed by OpenCV to INTER_AREA: <c>(a+b+c+d+2) &gt;&gt; 2</c> per 2x2 block.</item>
/// </list>
/// This reproduces the ELECT reference's relevance-mask images bit for bit (see <see cref="RelevanceMask"/>).
/// </summary>
public static class CvResize
{
    private const int CoefBits = 11;
    private const int CoefScale = 1 << CoefBits;
    private const double DblEpsilon = 2.220446049250313e-16; // C DBL_EPSILON (not .NET double.Epsilon)

    /// <summary><c>cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)</c> for uint8 grey.</summary>
    public static GrayImage Linear(GrayImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width < 1 || height < 1) throw new ArgumentException($"height and width must be > 0 (got {width}x{height})");
        int sw = image.Width, sh = image.Height;
        double invX = (double)width / sw, invY = (double)height / sh;
        double scaleX = 1.0 / invX, scaleY = 1.0 / invY;
        var src = image.Data;
        var dst = new byte[width * height];

        int iscaleX = (int)Math.Round(scaleX, MidpointRounding.ToEven), iscaleY = (int)Math.Round(scaleY, MidpointRounding.ToEven);
        bool areaFast = Math.Abs(scaleX - iscaleX) < DblEpsilon
                     && Math.Abs(scaleY - iscaleY) < DblEpsilon;
        if (areaFast && iscaleX == 2 && iscaleY == 2)
        {
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    int o = 2 * y * sw + 2 * x;
                    dst[y * width + x] = (byte)((src[o] + src[o + 1] + src[o + sw] + src[o + sw + 1] + 2) >> 2);
                }
            return new GrayImage(width, height, dst);
        }

        // Column taps.
        var xofs = new int[width];
        var alpha = new int[width * 2];
        int xmax = width;
        for (int dx = 0; dx < width; dx++)
        {
            float fx = (float)((dx + 0.5) * scaleX - 0.5);
            int sx = (int)MathF.Floor(fx);
            fx -= sx;
            if (sx < 0) { fx = 0; sx = 0; }
            if (sx + 1 >= sw)
            {
                xmax = Math.Min(xmax, dx);
                if (sx >= sw - 1) { fx = 0; sx = sw - 1; }
            }
            xofs[dx] = sx;
            alpha[dx * 2] = RoundShort((1f - fx) * CoefScale);
            alpha[dx * 2 + 1] = RoundShort(fx * CoefScale);
        }

        // Horizontal pass over every source row (exact integers, scale 2048).
        var rows = new int[sh * width];
        for (int y = 0; y < sh; y++)
        {
            int si = y * sw, di = y * width;
            int dx = 0;
            for (; dx < xmax; dx++)
            {
                int sx = xofs[dx];
                rows[di + dx] = src[si + sx] * alpha[dx * 2] + src[si + Math.Min(sx + 1, sw - 1)] * alpha[dx * 2 + 1];
            }
            for (; dx < width; dx++) rows[di + dx] = src[si + xofs[dx]] * CoefScale;
        }

        // Vertical pass: rows clamped, weights as computed.
        for (int dy = 0; dy < height; dy++)
        {
            float fy = (float)((dy + 0.5) * scaleY - 0.5);
            int sy = (int)MathF.Floor(fy);
            fy -= sy;
            int b0 = RoundShort((1f - fy) * CoefScale), b1 = RoundShort(fy * CoefScale);
            int r0 = Math.Clamp(sy, 0, sh - 1) * width, r1 = Math.Clamp(sy + 1, 0, sh - 1) * width;
            int o = dy * width;
            for (int x = 0; x < width; x++)
            {
                int s0 = SatShort(rows[r0 + x] >> 4), s1 = SatShort(rows[r1 + x] >> 4);
                int v = (((b0 * s0) >> 16) + ((b1 * s1) >> 16) + 2) >> 2;
                dst[o + x] = (byte)Math.Clamp(v, 0, 255);
            }
        }
        return new GrayImage(width, height, dst);
    }

    private static int RoundShort(float v) => Math.Clamp((int)MathF.Round(v, MidpointRounding.ToEven), short.MinValue, short.MaxValue);

    private static int SatShort(int v) => Math.Clamp(v, short.MinValue, short.MaxValue);
}
