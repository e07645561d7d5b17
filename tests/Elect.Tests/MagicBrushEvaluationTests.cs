using System.Security.Cryptography;
using Xunit;
using Elect.Evaluation;
using Elect.Imaging;
using Elect.Modeling;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// The MagicBrush test set's metrics (OSU-NLP-Group/MagicBrush evaluation/image_eval.py). Goldens:
/// scripts/goldens/make_magicbrush_goldens.py (the reference's lines with torchvision's transforms on PIL images, the
/// Hub conversions of CLIP ViT-B/32 and DINO ViT-S/16 in tiny random form, torch.hub DINO's forward re-expressed).
/// </summary>
public sealed class MagicBrushMetricTests
{
    private static readonly Lazy<Dictionary<string, Tensor>> Golden = new(() =>
    {
        TorchRuntime.Initialize();
        var g = SafeTensors.Load(Repo.Data("magicbrush", "magicbrush-golden.safetensors"));
        foreach (var t in g.Values) t.DetachFromDisposeScope();
        return g;
    });

    public MagicBrushMetricTests() => TorchRuntime.Initialize();

    private const int Pairs = 4;

    private static RgbImage Image(string name)
    {
        var t = Golden.Value[name];
        return new RgbImage((int)t.shape[1], (int)t.shape[0], t.contiguous().data<byte>().ToArray());
    }

    private static string Sha(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    private static string GoldenSha(string name) => Convert.ToHexStringLower(Golden.Value[name].data<byte>().ToArray());

    private static double Scalar(string name) => Golden.Value[name].item<double>();

    private static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= tol, $"{what}: max |diff| {worst:G3} > {tol:G3}");
    }

    /// <summary>Every 16th row and column of CHW values, as the goldens store them.</summary>
    private static float[] Sub(float[] chw, int size)
    {
        var r = new List<float>();
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < size; y += 16)
                for (int x = 0; x < size; x += 16)
                    r.Add(chw[(c * size + y) * size + x]);
        return r.ToArray();
    }

    [Fact]
    public void L1AndL2ResizeTheGeneratedImageToTheGroundTruthWithPillowsBicubic()
    {
        for (int i = 0; i < Pairs; i++)
        {
            var gen = Image($"p{i}.gen");
            var gt = Image($"p{i}.gt");
            Assert.Equal(GoldenSha($"p{i}.resized_sha"), Sha(MagicBrushMetrics.ToGroundTruthSize(gen, gt).Data));
            Assert.Equal(Scalar($"p{i}.l1"), MagicBrushMetrics.L1(gen, gt), 1e-6);
            Assert.Equal(Scalar($"p{i}.l2"), MagicBrushMetrics.L2(gen, gt), 1e-6);
        }
    }

    [Fact]
    public void ClipAndDinoPreprocessingEqualTorchvisionOnPilImages()
    {
        using var clip = MagicBrushClip.Load(Repo.Data("magicbrush", "clip-b32"));
        foreach (var name in Enumerable.Range(0, Pairs).SelectMany(i => new[] { $"p{i}.gen", $"p{i}.gt" }))
        {
            var img = Image(name);
            var crop = TorchvisionTransforms.CenterCrop(TorchvisionTransforms.ResizeShorter(img, 224), 224);
            Assert.Equal(GoldenSha($"{name}.clip_crop_sha"), Sha(crop.Data));
            Close(Golden.Value[$"{name}.clip_pixels_sub"].data<float>().ToArray(), Sub(clip.PreprocessValues(img), 224), 0, $"{name} CLIP pixels");
            var dcrop = TorchvisionTransforms.CenterCrop(TorchvisionTransforms.ResizeShorter(img, 256), 224);
            Assert.Equal(GoldenSha($"{name}.dino_crop_sha"), Sha(dcrop.Data));
            Close(Golden.Value[$"{name}.dino_pixels_sub"].data<float>().ToArray(), Sub(MagicBrushDino.PreprocessValues(img), 224), 0, $"{name} DINO pixels");
        }
    }

    [Theory]
    [InlineData(150, 100, 224, 336, 224)]
    [InlineData(97, 131, 224, 224, 302)]
    [InlineData(64, 64, 256, 256, 256)]
    [InlineData(129, 150, 256, 256, 297)]
    [InlineData(3, 1000, 224, 224, 74666)]
    public void ResizeShorterFollowsTorchvisionsOutputSize(int w, int h, int size, int ew, int eh) =>
        Assert.Equal((ew, eh), TorchvisionTransforms.ShorterSideSize(w, h, size));

    [Fact]
    public void CenterCropRoundsHalfToEvenAndPadsSmallImages()
    {
        var img = new RgbImage(5, 4);
        for (int i = 0; i < img.Data.Length; i++) img.Data[i] = (byte)(i / 3);
        var c = TorchvisionTransforms.CenterCrop(img, 2);   // left round(1.5) = 2, top round(1.0) = 1
        Assert.Equal(new byte[] { 7, 7, 7, 8, 8, 8, 12, 12, 12, 13, 13, 13 }, c.Data);
        var p = TorchvisionTransforms.CenterCrop(img, 7);   // padded by (1, 1, 1, 2), nothing left to crop
        Assert.Equal((7, 7), (p.Width, p.Height));
        Assert.Equal(0, p.Data[0]);
        Assert.Equal(img.Data[0], p.Data[(1 * 7 + 1) * 3]);
    }

    [Fact]
    public void ClipImageFeaturesAndClipIMatchTheReference()
    {
        using var clip = MagicBrushClip.Load(Repo.Data("magicbrush", "clip-b32"));
        for (int i = 0; i < Pairs; i++)
        {
            var fg = clip.ImageFeatures(Image($"p{i}.gen"));
            var ft = clip.ImageFeatures(Image($"p{i}.gt"));
            Close(Golden.Value[$"p{i}.gen.clip_features"].data<float>().ToArray(), fg, 1e-4, $"pair {i} CLIP gen");
            Close(Golden.Value[$"p{i}.gt.clip_features"].data<float>().ToArray(), ft, 1e-4, $"pair {i} CLIP gt");
            Assert.Equal(Scalar($"p{i}.clip-i"), MagicBrushMetrics.Cosine(fg, ft), 1e-4);
        }
    }

    [Fact]
    public void DinoClsFeaturesMatchTorchHubsForwardWithItsLayerNormEps()
    {
        using var dino = MagicBrushDino.Load(Repo.Data("magicbrush", "dino-s16"));
        for (int i = 0; i < Pairs; i++)
        {
            var fg = dino.Features(Image($"p{i}.gen"));
            var ft = dino.Features(Image($"p{i}.gt"));
            Close(Golden.Value[$"p{i}.gen.dino_features"].data<float>().ToArray(), fg, 1e-4, $"pair {i} DINO gen");
            Close(Golden.Value[$"p{i}.gt.dino_features"].data<float>().ToArray(), ft, 1e-4, $"pair {i} DINO gt");
            Assert.Equal(Scalar($"p{i}.dino"), MagicBrushMetrics.Cosine(fg, ft), 1e-5);
        }
    }

    [Fact]
    public void DinoNeedsA224Model()
    {
        var e = Assert.Throws<ArgumentException>(() => MagicBrushDino.Load(Repo.Data("dino-tiny")));
        Assert.Contains("224x224", e.Message);
    }

    [SkippableFact]
    public void ClipTTokenisesLikeClipTokenizeAndMatchesTheReference()
    {
        var fixtures = Fixtures.Require();   // the CLIP tokenizer files
        using var clip = MagicBrushClip.Load(Repo.Data("magicbrush", "clip-b32"), Path.Combine(fixtures, "models", "ip2p-tiny", "tokenizer"));
        var captions = File.ReadAllLines(Repo.Data("magicbrush", "captions.txt"));
        for (int i = 0; i < Pairs; i++)
        {
            Assert.Equal(Golden.Value[$"p{i}.token_ids"].data<long>().ToArray(), clip.TokenIds(captions[i]));
            var text = clip.TextFeatures(captions[i]);
            Close(Golden.Value[$"p{i}.text_features"].data<float>().ToArray(), text, 1e-4, $"pair {i} text");
            Assert.Equal(Scalar($"p{i}.clip-t"), MagicBrushMetrics.Cosine(clip.ImageFeatures(Image($"p{i}.gen")), text), 1e-4);
            Assert.Equal(Scalar($"p{i}.clip-t_oracle"), MagicBrushMetrics.Cosine(clip.ImageFeatures(Image($"p{i}.gt")), text), 1e-4);
        }
        var longIds = clip.TokenIds(string.Join(" ", Enumerable.Repeat("house", 100)));
        Assert.Equal(77, longIds.Length);
        Assert.Equal(49407, longIds[^1]);
    }
}
