namespace Elect.Imaging;

/// <summary>A small deterministic synthetic scene (no assets): sky gradient, sun, ground, and a house.</summary>
public static class SampleImage
{
    /// <summary>
    /// Draws a width x height scene in pure integer arithmetic (identical on every platform): a vertical sky gradient,
    /// a yellow sun (upper right), green ground with a darker stripe pattern, and a house (red walls, brown roof,
    /// a door and a window) standing on the ground left of centre.
    /// </summary>
    public static RgbImage Create(int width = 512, int height = 512)
    {
        if (width < 8 || height < 8) throw new ArgumentException($"sample image must be at least 8x8 (got {width}x{height})");
        var img = new RgbImage(width, height);
        int horizon = height * 5 / 8;
        // Sun.
        int sunX = width * 3 / 4, sunY = height / 5, sunR = Math.Max(2, Math.Min(width, height) / 10);
        // House body.
        int houseL = width / 6, houseR = width / 6 + width * 3 / 10;
        int houseB = horizon + height / 16, houseT = houseB - height / 4;
        int roofPeak = houseT - height / 7;
        int houseMid = (houseL + houseR) / 2, halfW = (houseR - houseL) / 2 + width / 40;
        int doorL = houseMid - width / 30, doorR = houseMid + width / 30, doorT = houseB - height / 8;
        int winL = houseL + width / 30, winR = winL + width / 15, winT = houseT + height / 20, winB = winT + height / 15;

        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int r, g, b;
                if (y < horizon)
                {
                    // Sky: light near the horizon, deeper blue at the top.
                    int t = y * 255 / Math.Max(1, horizon - 1);
                    r = 40 + t * 140 / 255; g = 90 + t * 120 / 255; b = 200 + t * 50 / 255;
                    long dx = x - sunX, dy = y - sunY, d2 = dx * dx + dy * dy;
                    if (d2 <= (long)sunR * sunR) { r = 255; g = 220; b = 60; }
                    else if (d2 <= (long)(sunR + sunR / 3) * (sunR + sunR / 3)) { r = (r + 255) / 2; g = (g + 230) / 2; b = (b + 120) / 2; }
                }
                else
                {
                    int t = (y - horizon) * 255 / Math.Max(1, height - horizon);
                    r = 70 - t * 30 / 255; g = 150 - t * 50 / 255; b = 60 - t * 20 / 255;
                    if (((x + 2 * y) / Math.Max(1, width / 24)) % 2 == 0) { g -= 12; }
                }
                // Roof: triangle from (houseMid, roofPeak) to the wall tops, slightly wider than the walls.
                if (y >= roofPeak && y < houseT)
                {
                    long span = (long)halfW * (y - roofPeak) / Math.Max(1, houseT - roofPeak);
                    if (Math.Abs(x - houseMid) <= span) { r = 120; g = 60; b = 40; }
                }
                if (x >= houseL && x < houseR && y >= houseT && y < houseB)
                {
                    r = 190; g = 70; b = 60;
                    if (x >= doorL && x < doorR && y >= doorT) { r = 90; g = 50; b = 30; }
                    if (x >= winL && x < winR && y >= winT && y < winB)
                    {
                        bool bar = x == (winL + winR) / 2 || y == (winT + winB) / 2;
                        if (bar) { r = 240; g = 240; b = 240; } else { r = 150; g = 200; b = 240; }
                    }
                }
                int o = (y * width + x) * 3;
                img.Data[o] = (byte)r; img.Data[o + 1] = (byte)g; img.Data[o + 2] = (byte)b;
            }
        }
        return img;
    }
}
