using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.TextEncoders;
using Elect.Models.Vision;
using Elect.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Evaluation;

/// <summary>
/// torchmetrics' <c>CLIPScore(model_name_or_path="openai/clip-vit-large-patch14")</c> as PIE-Bench calls it:
/// <c>max(100 * cos(image_features, text_features), 0)</c>. The image goes through transformers 5's
/// <c>CLIPImageProcessor</c> (torchvision backend; <see cref="ClipImageProcessor"/>): uint8 resized so the shorter side is 224 (bicubic, antialiased,
/// by libtorch's uint8 kernel as torchvision's <c>resize</c> calls it), centre-cropped to 224x224, <c>(x/255 - mean) / std</c> with
/// OpenAI's mean and std; the text is tokenised without padding (one prompt) and cut to 77 ids as torchmetrics does.
/// </summary>
public sealed class ClipScore : IDisposable
{
    private static readonly float[] Mean = ClipImageProcessor.OpenAiClipMean;
    private static readonly float[] Std = ClipImageProcessor.OpenAiClipStd;
    private readonly ClipVisionModel _vision;
    private readonly ClipTextModel _text;
    private readonly ClipTokenizer _tokenizer;

    private ClipScore(ClipVisionModel vision, ClipTextModel text, ClipTokenizer tokenizer)
    {
        _vision = vision;
        _text = text;
        _tokenizer = tokenizer;
    }

    /// <summary>
    /// Loads a CLIPModel folder (openai/clip-vit-large-patch14 layout: config.json with <c>text_config</c> and
    /// <c>vision_config</c>, weights, tokenizer files); <paramref name="tokenizerDir"/> overrides where the tokenizer is read.
    /// </summary>
    public static ClipScore Load(string dir, string? tokenizerDir = null)
    {
        TorchRuntime.Initialize();
        var configPath = Path.Combine(dir, "config.json");
        var full = ModelConfig.Load(configPath);
        if (full.Raw("text_config") is not { } textConfig)
            throw new InvalidDataException($"{configPath}: not a CLIPModel config (no text_config)");
        var tcfg = ClipTextConfig.From(new ModelConfig(textConfig, configPath + ":text_config")) with
        {
            WithProjection = true,
            ProjectionDim = full.Int("projection_dim", 512),
        };
        var vision = ClipVisionModel.FromPretrained(dir);
        try
        {
            var text = ModuleSetup.LoadPretrained(new ClipTextModel(tcfg, torch.CPU, ScalarType.Float32), dir, ScalarType.Float32, torch.CPU,
                ignoreUnexpected: k => k.StartsWith("vision_model.", StringComparison.Ordinal) || k.StartsWith("visual_projection.", StringComparison.Ordinal)
                                       || k == "logit_scale" || k.EndsWith("position_ids", StringComparison.Ordinal),
                builtInPlace: true);
            return new ClipScore(vision, text, ClipTokenizer.FromFolder(tokenizerDir ?? dir));
        }
        catch
        {
            vision.Dispose();
            throw;
        }
    }

    /// <summary>The processor's pixel values [1,3,S,S] (S = the vision config's image size) for an image.</summary>
    public Tensor Preprocess(RgbImage image)
    {
        int size = _vision.Config.ImageSize;
        return ClipImageProcessor.Preprocess(image, size, size, size, Mean, Std);
    }

    /// <summary>The token ids torchmetrics passes: <c>[BOS, tokens..., EOS]</c> without padding, cut to 77.</summary>
    public long[] TokenIds(string prompt)
    {
        var t = _tokenizer.Tokenize(prompt);
        var ids = new List<long>(t.Count + 2) { _tokenizer.BosId };
        ids.AddRange(t);
        ids.Add(_tokenizer.EosId);
        return ids.Take(_text.Config.MaxPositionEmbeddings).ToArray();
    }

    /// <summary><c>max(100 cos(image, text), 0)</c>; <paramref name="mask"/> (PIE-Bench's edited part) multiplies the uint8 image first.</summary>
    public double Score(RgbImage image, string prompt, bool[,]? mask = null) => Math.Max(100 * Cosine(image, prompt, mask), 0);

    /// <summary>The cosine of the image's and the prompt's projected CLIP features.</summary>
    public double Cosine(RgbImage image, string prompt, bool[,]? mask = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(prompt);
        if (mask is not null)
        {
            if (mask.GetLength(0) != image.Height || mask.GetLength(1) != image.Width)
                throw new ArgumentException($"the {mask.GetLength(1)}x{mask.GetLength(0)} mask does not match the {image.Width}x{image.Height} image");
            var masked = image.Clone();
            for (int y = 0; y < image.Height; y++)
                for (int x = 0; x < image.Width; x++)
                    if (!mask[y, x]) for (int c = 0; c < 3; c++) masked.Data[(y * image.Width + x) * 3 + c] = 0;
            image = masked;
        }
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var vo = _vision.forward(Preprocess(image));
        var tokenIds = TokenIds(prompt);
        var ids = torch.tensor(tokenIds, [1, tokenIds.Length], ScalarType.Int64);
        using var to = _text.forward(ids);
        var a = vo.ImageEmbeds / vo.ImageEmbeds.norm(1, keepdim: true);
        var b = to.TextEmbeds! / to.TextEmbeds!.norm(1, keepdim: true);
        return (a * b).sum().item<float>();
    }

    public void Dispose()
    {
        _vision.Dispose();
        _text.Dispose();
    }
}
