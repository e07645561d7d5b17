using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.TextEncoders;
using Elect.Models.Vision;
using Elect.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Evaluation;

/// <summary>
/// The metrics of the MagicBrush test set as OSU-NLP-Group/MagicBrush evaluation/image_eval.py computes them, per
/// (generated, ground-truth) pair; the reference averages them over the pairs of a setting.
/// <list type="bullet">
/// <item><c>l1</c>, <c>l2</c>: both images <c>Image.open(...).convert("RGB")</c>; the generated one resized to the ground
/// truth's size by <c>gen.resize(gt.size)</c> (Pillow's default filter for RGB, bicubic: <see cref="PilResample"/>;
/// the same size is a copy); <c>ToTensor()</c> (0..1); <c>nn.L1Loss()</c> / <c>nn.MSELoss()</c>, the mean over every element.</item>
/// <item><c>clip-i</c>, <c>dino</c>: the cosine (<c>1 - scipy.spatial.distance.cosine</c>) of the two images' embeddings
/// (<see cref="MagicBrushClip"/>, <see cref="MagicBrushDino"/>).</item>
/// <item><c>clip-t</c>: the cosine of the generated image's CLIP embedding and the ground-truth caption's;
/// <c>clip-t_oracle</c>: the same for the ground-truth image (the reference reports both).</item>
/// </list>
/// </summary>
public static class MagicBrushMetrics
{
    /// <summary>Every metric, in the reference's order and by its names (<c>--metric l1,l2,clip-i,dino,clip-t</c>).</summary>
    public static readonly IReadOnlyList<string> All = ["l1", "l2", "clip-i", "dino", "clip-t", "clip-t_oracle"];

    /// <summary>The metrics that need no model.</summary>
    public static readonly IReadOnlyList<string> PixelOnly = ["l1", "l2"];

    /// <summary>The metrics that need the CLIP model.</summary>
    public static readonly IReadOnlyList<string> ClipMetrics = ["clip-i", "clip-t", "clip-t_oracle"];

    /// <summary>The metrics that need the ground-truth caption.</summary>
    public static readonly IReadOnlyList<string> CaptionMetrics = ["clip-t", "clip-t_oracle"];

    /// <summary>The generated image at the ground truth's size (<c>gen_img.resize(gt_img.size)</c>, bicubic).</summary>
    public static RgbImage ToGroundTruthSize(RgbImage generated, RgbImage groundTruth)
    {
        ArgumentNullException.ThrowIfNull(generated);
        ArgumentNullException.ThrowIfNull(groundTruth);
        return generated.Width == groundTruth.Width && generated.Height == groundTruth.Height
            ? generated
            : PilResample.Resize(generated, groundTruth.Width, groundTruth.Height, PilFilter.Bicubic);
    }

    /// <summary><c>nn.L1Loss()(ToTensor(gen.resize(gt.size)), ToTensor(gt))</c>.</summary>
    public static double L1(RgbImage generated, RgbImage groundTruth) => Distance(generated, groundTruth, squared: false);

    /// <summary><c>nn.MSELoss()(ToTensor(gen.resize(gt.size)), ToTensor(gt))</c>.</summary>
    public static double L2(RgbImage generated, RgbImage groundTruth) => Distance(generated, groundTruth, squared: true);

    private static double Distance(RgbImage generated, RgbImage groundTruth, bool squared)
    {
        var g = ToGroundTruthSize(generated, groundTruth).Data;
        var t = groundTruth.Data;
        double sum = 0;
        for (int i = 0; i < t.Length; i++)
        {
            float d = g[i] / 255f - t[i] / 255f;   // ToTensor's float32 values
            sum += squared ? (double)d * d : Math.Abs(d);
        }
        return sum / t.Length;
    }

    /// <summary><c>1 - scipy.spatial.distance.cosine(u, v)</c> (scipy clips the distance to [0, 2]).</summary>
    public static double Cosine(ReadOnlySpan<float> u, ReadOnlySpan<float> v)
    {
        if (u.Length != v.Length) throw new ArgumentException($"cosine: vectors of {u.Length} and {v.Length} values");
        double uv = 0, uu = 0, vv = 0;
        for (int i = 0; i < u.Length; i++)
        {
            uv += (double)u[i] * v[i];
            uu += (double)u[i] * u[i];
            vv += (double)v[i] * v[i];
        }
        double dist = Math.Clamp(1.0 - uv / Math.Sqrt(uu * vv), 0.0, 2.0);
        return 1 - dist;
    }

    internal static float[] Row(Tensor t) => t.to(ScalarType.Float32).contiguous().reshape(-1).data<float>().ToArray();
}

/// <summary>
/// CLIP-I and CLIP-T of image_eval.py: <c>clip.load("ViT-B/32")</c>'s <c>encode_image</c> / <c>encode_text</c>. We load
/// the Hub's conversion of the same weights (openai/clip-vit-base-patch32, a transformers CLIPModel folder): its
/// <c>get_image_features</c> / <c>get_text_features</c> are the same computation (class token after <c>ln_post</c> times
/// <c>proj</c>; end-of-text token after <c>ln_final</c> times <c>text_projection</c>; quick-GELU, eps 1e-5). We compute in
/// float32, i.e. as the reference does with <c>--device cpu</c> (<c>clip.load</c> on CUDA keeps the weights in float16).
/// The image goes through the package's <c>preprocess</c>: <c>Resize(n_px, BICUBIC)</c> on the PIL image (the shorter
/// side, <see cref="TorchvisionTransforms"/>), <c>CenterCrop(n_px)</c>, <c>ToTensor</c>, <c>Normalize</c> with CLIP's mean
/// and std, n_px = the model's image size (224). The caption is <c>clip.tokenize</c>d: <c>[SOT, BPE..., EOT]</c>; its
/// zero padding to 77 does not change the end-of-text output under the causal mask, so none is added. A caption over 77
/// tokens makes <c>clip.tokenize</c> raise (the reference run stops); we cut it as <c>truncate=True</c> does (76 tokens
/// and EOT). The BPE is transformers' CLIP tokenizer (<see cref="ClipTokenizer"/>), equal to the package's for text
/// that needs no ftfy repair or HTML unescaping.
/// </summary>
public sealed class MagicBrushClip : IDisposable
{
    private static readonly float[] Mean = ClipImageProcessor.OpenAiClipMean;
    private static readonly float[] Std = ClipImageProcessor.OpenAiClipStd;
    private const int ContextLength = 77;
    private readonly ClipVisionModel _vision;
    private readonly ClipTextModel _text;
    private readonly Lazy<ClipTokenizer> _tokenizerLazy;

    private MagicBrushClip(ClipVisionModel vision, ClipTextModel text, string tokenizerDir)
    {
        _vision = vision;
        _text = text;
        _tokenizerLazy = new Lazy<ClipTokenizer>(() => ClipTokenizer.FromFolder(tokenizerDir));
    }

    private ClipTokenizer Tokenizer => _tokenizerLazy.Value;

    /// <summary>
    /// Loads a CLIPModel folder (openai/clip-vit-base-patch32: config.json, weights, tokenizer files);
    /// <paramref name="tokenizerDir"/> overrides where the tokenizer is read (on first use: CLIP-I needs none).
    /// </summary>
    public static MagicBrushClip Load(string dir, string? tokenizerDir = null)
    {
        var (vision, text) = ClipScore.LoadTowers(dir);
        return new MagicBrushClip(vision, text, tokenizerDir ?? dir);
    }

    /// <summary>Loads the tokenizer now (CLIP-T needs it), so that a folder without its files fails before any item is evaluated.</summary>
    public void RequireTokenizer() => _ = Tokenizer;

    /// <summary><c>preprocess(image)</c> as float32 CHW values, n_px = the vision config's image size.</summary>
    public float[] PreprocessValues(RgbImage image)
    {
        int n = _vision.Config.ImageSize;
        var crop = TorchvisionTransforms.CenterCrop(TorchvisionTransforms.ResizeShorter(image, n, PilFilter.Bicubic), n);
        return TorchvisionTransforms.ToNormalizedChw(crop, Mean, Std);
    }

    /// <summary><c>encode_image(preprocess(image))</c>, [projection_dim].</summary>
    public float[] ImageFeatures(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int n = _vision.Config.ImageSize;
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var x = torch.tensor(PreprocessValues(image), [1, 3, n, n], ScalarType.Float32);
        using var o = _vision.forward(x);
        return MagicBrushMetrics.Row(o.ImageEmbeds);
    }

    /// <summary><c>clip.tokenize(caption)</c> without its zero padding (cut as <c>truncate=True</c> over 77 tokens).</summary>
    public long[] TokenIds(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        var ids = new List<long> { Tokenizer.BosId };
        ids.AddRange(Tokenizer.Tokenize(caption));
        ids.Add(Tokenizer.EosId);
        if (ids.Count > ContextLength)
        {
            ids.RemoveRange(ContextLength, ids.Count - ContextLength);
            ids[^1] = Tokenizer.EosId;
        }
        return ids.ToArray();
    }

    /// <summary><c>encode_text(clip.tokenize(caption))</c>, [projection_dim].</summary>
    public float[] TextFeatures(string caption)
    {
        var ids = TokenIds(caption);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var o = _text.forward(torch.tensor(ids, [1, ids.Length], ScalarType.Int64));
        return MagicBrushMetrics.Row(o.TextEmbeds!);
    }

    public void Dispose()
    {
        _vision.Dispose();
        _text.Dispose();
    }
}

/// <summary>
/// The DINO metric of image_eval.py: <c>torch.hub.load('facebookresearch/dino:main', 'dino_vits16')</c>, its
/// <c>model(x)</c> (the class token after the final norm) for
/// <c>Resize(256, bicubic) + CenterCrop(224) + ToTensor + Normalize(ImageNet mean, std)</c> on the PIL image. We load the
/// Hub's conversion of the same weights (facebook/dino-vits16, a transformers ViTModel folder) and run it as DINO's
/// model: the conversion's config says <c>layer_norm_eps</c> 1e-12 (transformers' default) where DINO's ViT-S/16 was built
/// with 1e-6, so 1e-6 is used; at 224x224 DINO's <c>interpolate_pos_encoding</c> returns the position embedding as is, and
/// the class token / patch order / GELU are the same. The model must take 224x224 (image_size 224).
/// </summary>
public sealed class MagicBrushDino : IDisposable
{
    private static readonly float[] Mean = [0.485f, 0.456f, 0.406f];
    private static readonly float[] Std = [0.229f, 0.224f, 0.225f];

    /// <summary>DINO's LayerNorm eps (vision_transformer.py builds its ViTs with <c>partial(nn.LayerNorm, eps=1e-6)</c>).</summary>
    public const double DinoLayerNormEps = 1e-6;

    /// <summary>The reference's resize and crop sizes.</summary>
    public const int ResizeSize = 256, CropSize = 224;

    private readonly DinoVit _vit;

    public MagicBrushDino(DinoVit vit)
    {
        ArgumentNullException.ThrowIfNull(vit);
        if (vit.Config.ImageSize != CropSize)
            throw new ArgumentException($"the DINO metric feeds {CropSize}x{CropSize} crops; this ViT takes {vit.Config.ImageSize}x{vit.Config.ImageSize} (image_size in config.json; facebook/dino-vits16 has 224)");
        _vit = vit;
    }

    /// <summary>Loads facebook/dino-vits16 (a transformers ViTModel folder) with DINO's LayerNorm eps.</summary>
    public static MagicBrushDino Load(string dir)
    {
        var vit = DinoVit.FromPretrained(dir, DinoLayerNormEps);
        try { return new MagicBrushDino(vit); }
        catch
        {
            vit.Dispose();
            throw;
        }
    }

    /// <summary>The transform's output as float32 CHW values [3,224,224].</summary>
    public static float[] PreprocessValues(RgbImage image)
    {
        var crop = TorchvisionTransforms.CenterCrop(TorchvisionTransforms.ResizeShorter(image, ResizeSize, PilFilter.Bicubic), CropSize);
        return TorchvisionTransforms.ToNormalizedChw(crop, Mean, Std);
    }

    /// <summary><c>model(transform(image))</c>, [hidden].</summary>
    public float[] Features(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(PreprocessValues(image), [1, 3, CropSize, CropSize], ScalarType.Float32);
        return MagicBrushMetrics.Row(_vit.ClsOutput(x));
    }

    public void Dispose() => _vit.Dispose();
}
