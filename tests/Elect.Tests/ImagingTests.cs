using System.Security.Cryptography;
using Elect.Imaging;
using Elect.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// Imaging layer. Expected hashes / sizes were computed once with Pillow 9.4 (Debian python3-pil; its Resample.c and
/// ImageOps.fit compute exactly as Pillow 12) on the synthetic images of <see cref="Synth"/>, using the reference's
/// <c>image_resize</c> verbatim; no Python is needed at run time.
/// </summary>
public class ImagingTests
{
    /// <summary>The synthetic test image (same formula as the Python script that made the expectations).</summary>
    private static byte[] Synth(int w, int h, int ch, int seed)
    {
        var a = new byte[w * h * ch];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < ch; c++)
                {
                    int r = (x * x * 7 + y * y * 3 + x * y * 5 + c * 101 + seed * 31) % 251;
                    int b = ((x / 4) + (y / 3) + c + seed) % 3;
                    a[(y * w + x) * ch + c] = (byte)(b == 0 ? 0 : b == 1 ? 255 : r);
                }
        return a;
    }

    private static string Sha(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public sealed record LanczosCase(int W, int H, int Ch, int Seed, int OutW, int OutH, double[]? Box, string Sha256)
    {
        public override string ToString() => $"{W}x{H}x{Ch} -> {OutW}x{OutH}" + (Box is null ? "" : $" box [{string.Join(",", Box)}]");
    }

    public static readonly TheoryData<LanczosCase> LanczosCases = new()
    {
        new(300, 200, 3, 1, 192, 128, null, "28ea4657703a79691a228a61a2a69dd0356c14f237e2da76db870a7e366d02b4"),
        new(97, 131, 3, 2, 64, 64, null, "221549dbdaaf42881852917c2cc774d3ae38d76c4964278593c5a8d74b3f43fb"),
        new(37, 23, 3, 3, 64, 64, null, "a7c37f649e527e653480236bb73f9a275362ecfcf67e19fcc0fe84e4fe2d0c12"),
        new(97, 40, 3, 4, 64, 96, null, "47bfc01590a73493e115c3292e5d5c0008afdfef6f057c47b7ebe8c3c5476eb9"),
        new(50, 40, 3, 5, 50, 40, null, "43ec25fcf428f25127445b7ace0937801c57caf7d4ab161e1b006e623ddb6ed5"),
        new(64, 48, 3, 6, 64, 47, null, "9f6a37cd597647d9aaaddec3225786c57211d7db17bd745dfdcd3acfa00167fe"),
        new(64, 48, 3, 7, 63, 48, null, "adb5c557fda35ce41200dbc0a2d60d5098fd856082b20662eb6adb67932d0309"),
        new(97, 131, 1, 8, 61, 200, null, "51a07be74f5aa6fc6cb56a6eb037e2d1a2f6695e52ffedc389ed14307d61e4e6"),
        new(97, 131, 3, 9, 40, 30, new[] { 3.5, 2.25, 90.75, 120.0 }, "151c540307fdf2c6b8e5c810c69d42256c6ca1eb41f0425999fe60f3c4c704e4"),
        new(97, 131, 3, 10, 20, 25, new[] { 5.0, 6.0, 25.0, 31.0 }, "269bf475fd62165b3b92de55117ccefa96960fdc3d148da65135910a9e9111c5"),
        new(16, 16, 1, 11, 128, 128, null, "252c5e4d55abbfd42a140b2642814c6e4fd7b315a9b4ff88ed7c38e8231c9d9e"),
        new(512, 384, 3, 12, 77, 333, null, "ec7d529fda7fdddb3ed92df75b9b429cb2f0877494ee51e346f17225093a5837"),
    };

    [Theory]
    [MemberData(nameof(LanczosCases))]
    public void Lanczos_MatchesPillow(LanczosCase c)
    {
        var src = Synth(c.W, c.H, c.Ch, c.Seed);
        double[] box = c.Box ?? new double[] { 0, 0, c.W, c.H };
        byte[] output = c.Ch == 3
            ? Lanczos.Resize(new RgbImage(c.W, c.H, src), c.OutW, c.OutH, box[0], box[1], box[2], box[3]).Data
            : Lanczos.Resize(new GrayImage(c.W, c.H, src), c.OutW, c.OutH, box[0], box[1], box[2], box[3]).Data;
        Assert.Equal(c.OutW * c.OutH * c.Ch, output.Length);
        Assert.Equal(c.Sha256, Sha(output));
    }

    [Theory]
    [InlineData(512, 512, 512, 512, 512)]
    [InlineData(300, 200, 512, 576, 384)]
    [InlineData(200, 300, 512, 384, 576)]
    [InlineData(640, 480, 512, 512, 384)]
    [InlineData(480, 640, 512, 384, 512)]
    [InlineData(1000, 333, 512, 576, 192)]
    [InlineData(333, 1000, 512, 192, 576)]
    [InlineData(1920, 1080, 512, 512, 320)]
    [InlineData(97, 131, 64, 64, 64)]
    [InlineData(131, 97, 128, 128, 128)]
    [InlineData(100, 100, 128, 128, 128)]
    [InlineData(700, 500, 768, 768, 576)]
    [InlineData(1023, 767, 512, 512, 384)]
    [InlineData(510, 512, 512, 512, 512)]
    [InlineData(600, 337, 512, 512, 320)]
    public void ImageResizeSize_MatchesReference(int w, int h, int resolution, int expectedW, int expectedH)
    {
        Assert.Equal((expectedW, expectedH), ImageOps.ImageResizeSize(w, h, resolution));
    }

    [Theory]
    [InlineData(300, 200, 21, 128, 192, 128, "2cf832784d024cbf4f7a0fd1e7276c156a76b14ae37b7d957366227867c23250")]
    [InlineData(200, 300, 22, 128, 128, 192, "a873e385acb8375af3115565ea0ce5072349c2710f62592bbd4971bbc9d7e69a")]
    [InlineData(131, 97, 23, 64, 64, 64, "8fe06f5a75b95fa03c9b41012afe24628f1d4303f6022b85f9b44947331110b4")]
    [InlineData(100, 100, 24, 128, 128, 128, "2fadf833adbc14429df9778cc6a73279b85ab11380b5007a121456e14c0a13be")]
    [InlineData(90, 250, 25, 128, 64, 128, "075d689c268a285b7b625e757274d3da86dcad80f6163b5f0c7d94be873d1672")]
    public void ImageResize_MatchesReference(int w, int h, int seed, int resolution, int expectedW, int expectedH, string sha)
    {
        var r = ImageOps.ImageResize(new RgbImage(w, h, Synth(w, h, 3, seed)), resolution);
        Assert.Equal((expectedW, expectedH), (r.Width, r.Height));
        Assert.Equal(sha, Sha(r.Data));
    }

    [Fact]
    public void Lanczos_SameSizeIsCopy()
    {
        var img = new RgbImage(9, 7, Synth(9, 7, 3, 1));
        var r = Lanczos.Resize(img, 9, 7);
        Assert.Equal(img.Data, r.Data);
        Assert.NotSame(img.Data, r.Data);
    }

    [Theory]
    [InlineData("L", "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFCAAAAACs8akEAAAAM0lEQVR4nAEoANf/AWNrIc4pkBoC5jr1Ktgl4AJVyCPl0dZFAOdQGyzNy0ECyM65KrDHvV0VEsnu4GOWAAAAAElFTkSuQmCC", "841b45cc69f8f40c8453d0cfe487cfcab624796a45e25c4e4c4fd1339015f490")]
    [InlineData("LA", "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFCAQAAAAjkz5TAAAAVklEQVR4nAFLALT/AHmJainpvoHSZ5DOBToAAdCEniD7D7Js5yUkJa0qAkLth+P7uVJ/vMfF2qkuBKUSZsdAT4Y76Hy71/4ZAR8JByZqVhIoGevS3l5yJygiLVmeKyQAAAAASUVORK5CYII=", "838f99ecafa0f8c15135d20822b22b8e5aeabb9d683273e471285fb5054075e3")]
    [InlineData("RGBA", "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFCAYAAACJmvbYAAAAnElEQVR4nAGRAG7/AR8gTKxmbmOyzfI4KYR7Kbky3xw+nYSfB0Q46cAA0rxbHdh44dzPRiNvFLH/SKDSDdz775I0URY60wB061zTsQRS8ySpFKAKHw98FkaJP14Owno5k8AIAhQQHfRbkOnVpi3oKJZwX0kNeGJsBvLACLhIAaUB1/8Bl9tXEp/majoT6UnzHxaeOVxYKuJgg5D8IX63QHZ5HWOYAAAAAElFTkSuQmCC", "497dab1345ff5a32b83aab1df765563be407fd20f181c5441f75916cb3ad8f1c")]
    [InlineData("P", "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFBAMAAAB7tOvrAAAAElBMVEX/AAAA/wAAAP8KFB7IZDIBAgOUcIbrAAAAA3RSTlP//wDXyg1BAAAAIUlEQVR4nGNwUQpUYDAVcmRgEDJQVWAIMRIVYBAVZGEAACkvAryOBlkdAAAAAElFTkSuQmCC", "c8a76c27caa8fd761ecc463ef2be0888149647b952ed3329f3be9625ccac66ee")]
    public void Decode_ConvertsToRgbLikePillow(string mode, string base64, string sha)
    {
        var img = RgbImage.Decode(Convert.FromBase64String(base64), mode);
        Assert.Equal((7, 5), (img.Width, img.Height));
        Assert.Equal(sha, Sha(img.Data));
    }

    private const string JpegBase64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAAYACADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD4B0TwJ9393+legaJ4E+7+7/SvStE8Cfd/d/pXf6J4E+7+7/St8JXPL4e4q+H3jzXRPAn3f3f6V3+ieBPu/u/0r0rRPAn3f3f6V3+ieBPu/u/0r7HC1z+meHuKvh944vRPAn3f3f6V3+ieBPu/u/0oor8wws2f5gcPZjiPd949A0TwJ9393+ldvY+EYtPt/OmXao6ADkn0HvRRXfnOZ18qyfFY/D256cJSV9VdLS+x/UHDGOrzqQi5btH/2Q==";
    private const string JpegPillowPixels = "AAEAAgICDAMIEwQLHAEQJAEVLQMbMwIgPAMmQwIsSwMxUwM2XAE8ZQE/bQNFdAJIfAJPgwJUiwNYkwNbnQFipgJlrQJstAJwuwN1wwN8ywOA1AOF3AKM5QKP7AOT8gSWAggGCAoJDwoOFgsRIAoWKQoaMQkhOAomQAosRwsxTgs3Vws8YQpBaQlGcApLeAtPgApWiApbjwtflwtioQpnqgpssQtxuAt3wAt8xgqCzwuH2AuM4AqQ6AqV8Aua9QycAxILCBMNEBQTGRQYIhIcKRMgMxMoORMsQRQzRxM3TxU+WBRDYRNHahNKchRQeBRUgRNaiBRfjxRkmBRoohNtqhNyshN3uRR9wBSCyRSJ0BSN2BSS4hOX6hSa8RSf9xaiAhwRBxwTER0ZGB4cIRwgKRwlMxwsORwwQB43Rh07UB5DWB5HYBxLaRxQch1WeB1agR5hhx1lkB1qlx5toR1xqR12shx9uR2CwB2IyB2N0B2S1x6W4R2b6h2g8R2l9h+oAicWBykZDykeGCkjIigoKSgtMigzOSg4QCg+RylDUChKWChOYShTaihWcSlbeClggSlmhyhqjypwmCl1oSh4qCh9simDuCiHvymNximSzymZ1yid4Sei6Sil8Siq9iqtATAcBjMfDjMiFzMnITIsKDIxMTI3ODI8PzJDRjNHTzJOVzJTYDJXaTJccDNfdzNkgDJshjJwjjR0lzN5oDF9pzKBsTOHtzKLvjKSxTOWzjKd1jKi4DGm6DKr8DKu9TSxATsiBjwkED0oFz4sIDwwKDs1Mjw9ODtAPz1IRT1MTz1TVz1YXzxcaDxgcT1kdzxofzxxhj11jj14lj19oDyCqDyHsTyNuDySvz2Xxjybzz2i1j2n3zur6Duv8D2z9D61AkUmB0YpD0csF0cxIUY1KkY6MUZBOEZGP0ZMR0dRTkdXVkdcYEZhaUZmcEdpd0dtgEZ2hkZ6jkh+l0eCoEaGqUWLsUeSt0aWwEabx0agzkem10ar4UWw6Ea18Ua49Ui7A08rCE8tEFExGVE2Ik86Kk8+MlBGOVBKQFBQR1BVTlBcV1BgYU9laU9qcVBteFBygFB6h09+j1GCl1GHoE+KqU+PsVCXt0+awE+fx1Ckz1Cr11Cv4U+06E+58U+89VK/A1gvCFoyEFo1GVo6Ilo/KlpEM1lKOlpPQFtWRlpZUFthWFpmYVhpaFluclpyeFl4f1l+h1qDj1qGmFqLolmQqVmUslmbuVmgwFqkx1qp0Fqw2Vq14Vq56lm+8VrB91zEA2M1CGM3EGU7GWU/IWRFKWNKM2RPOWRTQGRaR2RfUGRlV2RqYWNvamNzcmN4emN9gWSDh2OHkWSLmGWQoWOUqWOZs2OguWOkv2SqxmSvz2S02GS54GO+6WPC8WPF9mbIAm05B207D29BGG9EIG1JKG1OMm5UOG5XP25eRm5jT25pVm5uYG1zaW14cW18eW2BgG6Ihm2LkG6Rl2+UoG2YqG2dsm2kuG2ov26wxW6zzm641m69323C6G3H8G3L9W/OAng+BnlAD3pGGHpLIHhOKHhTMnlbOHheP3pmRXpqTnlwVnl1YHh6Z3h/cHmCd3mGfnmNhnqSjnqWl3mboXigqHmlsXmquHmuv3m1xXm5z3nA13nF33jJ6HjM8HrS9XrUAYFEBoJGDoNMF4NPIIJTKYFXMYNfN4JjP4NqRYNuT4N2VoR6X4J+aIKDcIOJeIKMf4KThoOYjYOcloOfoIKkqIKpsIOut4O0v4O5xoK/zoPE1oPJ34HN6IHS8ILY9ITaAopIB4xLD41QF4xVIYtaKoteMYtlOIxqQIxwRox0T4x8WIyAYYqEaIuHcIyNeIuRgIyYhoycj42il42moIuqqYuvsYy1t4y6wIu/x4zGzozK14zP4YvU6YvX8Yzc9o3fA5VOBpZQEJdVGZdaIJVeKZVjM5ZqOZVuQZZ1R5Z5UZd/WZaEYZWJapWMcpaSeZWWgZWeiZWjkJWomJarn5eup5exsJa5uZbAwZXIx5TM0JfO15fT3pbW6JXb8pbh95blAp9SB59UD6FaGKFdH6BgKJ9lMaBtOJ9wQKF4RqB8UKGBWKGGYJ+MaZ+PcqCVeJ+ag56lip2rkp+wmKGwnKOtpKSwr6K8uJ/Gwp7OyJzRz5/P2KTV3KPa457d8Z7k/qTuA6lXB6pZD6xfGKxiIalnKalsMatyOKp2P6p8RquBT6uGV6uKYaqPaaqUcaqZeqmfgqipi6iwkam1l6u0m6+worCzrqzBuKrLxKfTzKjY0KvW1azY26zg563o9Kns+KXtArJdB7NfD7RlGLVoILNtKLNyMrR4OLN8QLSDRrSHULWNV7WRYLOVabOYc7SeebOkgrSrirKxkrO4mLW7m7e4o7i9r7bIuLTPxrLXzLLZz7PZ1LPe27Tr6LT09rH0+67yAbxjB71mDr5pF75uIL5zKL53Mb58N72AP76HRb6LT7+RVr+WX72ZaL2ecr6keL2ogb6uibyzkb67l7+/nMDAo8DErsDOt73TxbzZyrnZzbze1b/m3L7y5brw97zq/8HsAcdoBslrDcpuFspzIMl4KMl9L8mDN8mIPsmORMmSTsqYVsqdX8igZ8mjcMmpeMitgMqziMi4kMq+lsvDmsvHoszLrcvVt8jaw8Xaysbdz8nl1crs38rx6svq+MvQ/8rCANFsBtJvDdN0FdR3H9N8J9OBMNKHN9OMPtOTRNKWTtOcVdShXtKlZ9GpcdKvd9KzgNK8h9HAkNLGltTJm9TNotTTrdPct9Hewc/czdPj0tTp1NLo39bn8N3W9teh7Mh8A9pyB9t0D915F91+INuCKNuHMdyON9uSP9yXRtycTtyiV9ynYdusaNyvcduzeNu8gdnJiNnQkdrRmNvSntzXptzer9vkutrnxdniztzl1N3s2d7k4OHT6OKm7N1e6NQzBuJ4C+R7E+R/G+WCJeOJLeOONOSTPOSXROSeSuOiU+WnW+SsZOKybeK1deS6feLEheHUjd/bleLanOPbouPfqePktOPtveHtzOXszt/m1ePu4u3p4ufJ29uF5t069egd";

    [Fact]
    public void Decode_Jpeg_CloseToPillow()
    {
        var img = RgbImage.Decode(Convert.FromBase64String(JpegBase64), "sample.jpg");
        var pil = Convert.FromBase64String(JpegPillowPixels);
        Assert.Equal((32, 24), (img.Width, img.Height));
        int max = 0;
        for (int i = 0; i < pil.Length; i++) max = Math.Max(max, Math.Abs(pil[i] - img.Data[i]));
        Assert.True(max <= 2, $"stb_image JPEG decode differs from Pillow's by {max} levels");
    }

    [Fact]
    public void Png_RoundTrip()
    {
        var dir = Directory.CreateTempSubdirectory("elect-img-");
        try
        {
            var rgb = new RgbImage(37, 23, Synth(37, 23, 3, 4));
            var p = Path.Combine(dir.FullName, "sub", "a.png");
            rgb.SavePng(p);
            var back = RgbImage.Load(p);
            Assert.Equal((37, 23), (back.Width, back.Height));
            Assert.Equal(rgb.Data, back.Data);

            var gray = new GrayImage(19, 11, Synth(19, 11, 1, 5));
            var q = Path.Combine(dir.FullName, "m.png");
            gray.SavePng(q);
            var g2 = GrayImage.Load(q);
            Assert.Equal(gray.Data, g2.Data);
            Assert.Equal(gray.ToRgb().Data, RgbImage.Load(q).Data);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Load_MissingFile_NamesTheFile()
    {
        var p = Path.Combine(Path.GetTempPath(), "elect-no-such-image-" + Guid.NewGuid().ToString("N") + ".png");
        var e = Assert.Throws<FileNotFoundException>(() => RgbImage.Load(p));
        Assert.Contains(p, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, "unknown")]
    [InlineData(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0 }, "corrupt")]
    [InlineData(new byte[0], "empty")]
    public void Load_CorruptFile_OneLineMessage(byte[] content, string expected)
    {
        var p = Path.Combine(Path.GetTempPath(), "elect-bad-" + Guid.NewGuid().ToString("N") + ".png");
        File.WriteAllBytes(p, content);
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => RgbImage.Load(p));
            Assert.Contains(p, e.Message);
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        finally { File.Delete(p); }
    }

    [Fact]
    public void Rle_Decode_HandMade()
    {
        // 6 rows x 5 columns; runs: (7,3) = row 1 cols 2-4, (16,2) = row 3 cols 1-2, (28,10) clipped to cells 28-29.
        int[] rle = { 7, 3, 16, 2, 28, 10 };
        var plain = RleMask.Decode(rle, height: 6, width: 5, markBorder: false);
        var expected = new bool[6, 5];
        expected[1, 2] = expected[1, 3] = expected[1, 4] = true;
        expected[3, 1] = expected[3, 2] = true;
        expected[5, 3] = expected[5, 4] = true;
        Assert.Equal(expected, plain);

        var pie = RleMask.Decode(rle, height: 6, width: 5);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 5; x++)
                Assert.Equal(expected[y, x] || y == 0 || y == 5 || x == 0 || x == 4, pie[y, x]);

        var img = RleMask.DecodeImage(new[] { 0, 512 * 512 + 5 }, markBorder: false);
        Assert.Equal((512, 512), (img.Width, img.Height));
        Assert.All(img.Data, v => Assert.Equal(255, v));
        Assert.Throws<ArgumentException>(() => RleMask.Decode(new[] { 1, 2, 3 }));
    }

    [Fact]
    public void FromUnitFloat_Truncates()
    {
        var g = GrayImage.FromUnitFloat(new float[] { 0f, 0.999f / 255f, 0.5f, 1f, 1.5f, -0.2f, float.NaN, 0.00392f }, 8, 1);
        Assert.Equal(new byte[] { 0, 0, 127, 255, 255, 0, 0, 0 }, g.Data);
        var d = GrayImage.FromUnitFloat(new double[] { 0.5, 254.999 / 255 }, 2, 1);
        Assert.Equal(new byte[] { 127, 254 }, d.Data);
    }

    [Fact]
    public void Tensor_RoundTrips()
    {
        TorchRuntime.Initialize();
        var img = new RgbImage(5, 3, Synth(5, 3, 3, 9));
        using var t = img.ToTensor();
        Assert.Equal(new long[] { 1, 3, 3, 5 }, t.shape);
        var v = t.data<float>().ToArray();
        Assert.Equal(img.Data[0] / 127.5f - 1f, v[0]);
        Assert.Equal(img.Data[1] / 127.5f - 1f, v[15]);
        Assert.Equal(img.Data, RgbImage.FromNormalizedBatch(t)[0].Data);
        using var unit = (t[0] / 2 + 0.5);
        Assert.Equal(img.Data, RgbImage.FromTensor(unit).Data);
        using var hwc = unit.permute(1, 2, 0).contiguous();
        Assert.Equal(img.Data, RgbImage.FromTensor(hwc, TensorLayout.ChannelsLast).Data);
        Assert.Throws<ArgumentException>(() => RgbImage.FromTensor(hwc)); // [3,5,3]: ambiguous
        using var hwc4 = torch.zeros(4, 5, 3);
        Assert.Equal((5, 4), (RgbImage.FromTensor(hwc4).Width, RgbImage.FromTensor(hwc4).Height));
        // Half-way values round to even, as numpy's round does.
        using var halves = torch.tensor(new float[] { 0.5f / 255f, 1.5f / 255f, 2.5f / 255f }, new long[] { 1, 1, 3 }).expand(3, 1, 3).contiguous();
        var r = RgbImage.FromTensor(halves, TensorLayout.ChannelsFirst);
        Assert.Equal(new byte[] { 0, 0, 0, 2, 2, 2, 2, 2, 2 }, r.Data);
    }

    [Fact]
    public void SampleImage_IsDeterministic()
    {
        var a = SampleImage.Create(96, 64);
        var b = SampleImage.Create(96, 64);
        Assert.Equal(a.Data, b.Data);
        Assert.Equal((96, 64), (a.Width, a.Height));
        Assert.True(a.Data.Distinct().Count() > 20);
        var big = SampleImage.Create();
        Assert.Equal((512, 512), (big.Width, big.Height));
    }

    // ---- fixtures ----

    public static readonly TheoryData<string, int, int> MaskFixtures = new()
    {
        { "ip2p.elect", 128, 128 },
        { "ip2p.elect2", 192, 128 },
        { "ultraedit.elect", 128, 128 },
    };

    /// <summary>Torch bilinear (half-pixel centres) of the float map, then truncation: within 1 level of the golden.</summary>
    [SkippableTheory]
    [MemberData(nameof(MaskFixtures))]
    public void OutputMask_TorchBilinear_WithinOneLevel(string run, int width, int height)
    {
        Fixtures.Require();
        var map = Fixtures.Golden(run + ".relevance_map");
        var golden = Fixtures.Golden(run + ".output-mask");
        using var up = nn.functional.interpolate(map.to(ScalarType.Float32).unsqueeze(0).unsqueeze(0),
            size: new long[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false)[0, 0];
        var mask = GrayImage.FromUnitFloat(up);
        Assert.Equal((width, height), (mask.Width, mask.Height));
        var g = golden.data<byte>().ToArray();
        int max = 0;
        for (int i = 0; i < g.Length; i++) max = Math.Max(max, Math.Abs(g[i] - mask.Data[i]));
        Assert.True(max <= 1, $"{run}: max |diff| {max} levels");
    }

    /// <summary>The reference's own path (truncate, then OpenCV bilinear on uint8) reproduces the golden exactly.</summary>
    [SkippableTheory]
    [MemberData(nameof(MaskFixtures))]
    public void OutputMask_ReferencePath_Exact(string run, int width, int height)
    {
        Fixtures.Require();
        var map = Fixtures.Golden(run + ".relevance_map");
        var golden = Fixtures.Golden(run + ".output-mask");
        var mask = RelevanceMask.ToImage(map, width, height);
        Assert.Equal((width, height), (mask.Width, mask.Height));
        Assert.Equal(golden.data<byte>().ToArray(), mask.Data);
    }

    [SkippableFact]
    public void Fixture_InputToTensor_MatchesVaeImage()
    {
        var root = Fixtures.Require();
        var img = RgbImage.Load(Path.Combine(root, "models", "ip2p-input.png"));
        using var t = img.ToTensor();
        TensorAssert.Close(Fixtures.Golden("ip2p.vae.image"), t, 0, "ip2p.vae.image");
        var img2 = RgbImage.Load(Path.Combine(root, "models", "ip2p-input2.png"));
        Assert.Equal((192, 128), (img2.Width, img2.Height));
    }

    [SkippableFact]
    public void Fixture_FromTensor_MatchesEightBitOutputs()
    {
        Fixtures.Require();
        var v = Fixtures.Golden("ip2p.vanilla.seed11");
        var img = RgbImage.FromTensor(v);
        Assert.Equal((128, 128), (img.Width, img.Height));
        Assert.Equal(Fixtures.Golden("ip2p.elect.output-11").data<byte>().ToArray(), img.Data);
    }
}
