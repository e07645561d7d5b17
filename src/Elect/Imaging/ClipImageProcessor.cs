using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Imaging;

/// <summary>
/// transformers 5's <c>CLIPImageProcessor</c> (torchvision backend, the default in 5.12): the uint8 image resized so its
/// shorter side is <c>shortest_edge</c> (the long side truncated, as <c>get_resize_output_image_size(default_to_square=False)</c>;
/// bicubic, antialiased, by libtorch's uint8 kernel as torchvision's <c>resize</c> calls it), centre-cropped
/// (offsets <c>round((size - crop) / 2)</c>, half to even), then <c>(x - 255 mean) / (255 std)</c> in float32 (rescale and
/// normalise fused). Reads <c>preprocessor_config.json</c> in either format (<c>"size": 224</c> / <c>"crop_size": 224</c> as
/// openai/clip-vit-large-patch14 publishes it, or the dict forms).
/// </summary>
public sealed record ClipImageProcessor(int ShortestEdge, int CropHeight, int CropWidth, float[] Mean, float[] Std)
{
    public static readonly float[] OpenAiClipMean = [0.48145466f, 0.4578275f, 0.40821073f];
    public static readonly float[] OpenAiClipStd = [0.26862954f, 0.26130258f, 0.27577711f];

    /// <summary>Reads <c>preprocessor_config.json</c> of <paramref name="dir"/>; refuses settings the port does not do.</summary>
    public static ClipImageProcessor FromPretrained(string dir)
    {
        var path = Path.Combine(dir, "preprocessor_config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"missing image processor config {path}", path);
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            root = doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object");

        bool Flag(string key, bool fallback) => root.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
        foreach (var (key, want) in new[] { ("do_resize", true), ("do_center_crop", true), ("do_normalize", true), ("do_rescale", true) })
            if (Flag(key, true) != want) throw new NotSupportedException($"{path}: '{key}' = false is not supported");
        if (root.TryGetProperty("resample", out var rs) && rs.ValueKind == JsonValueKind.Number && rs.GetInt32() != 3)
            throw new NotSupportedException($"{path}: 'resample' = {rs.GetInt32()} is not supported (only 3, bicubic)");
        if (root.TryGetProperty("rescale_factor", out var rf) && rf.ValueKind == JsonValueKind.Number && Math.Abs(rf.GetDouble() - 1 / 255.0) > 1e-12)
            throw new NotSupportedException($"{path}: 'rescale_factor' = {rf.GetRawText()} is not supported (only 1/255)");

        int shortest = root.TryGetProperty("size", out var size)
            ? size.ValueKind == JsonValueKind.Number ? size.GetInt32()
              : size.ValueKind == JsonValueKind.Object && size.TryGetProperty("shortest_edge", out var se) ? se.GetInt32()
              : throw new NotSupportedException($"{path}: 'size' = {size.GetRawText()} is not supported (only an int or {{\"shortest_edge\": n}})")
            : 224;
        int ch = 224, cw = 224;
        if (root.TryGetProperty("crop_size", out var crop))
        {
            if (crop.ValueKind == JsonValueKind.Number) ch = cw = crop.GetInt32();
            else if (crop.ValueKind == JsonValueKind.Object && crop.TryGetProperty("height", out var h) && crop.TryGetProperty("width", out var w)) { ch = h.GetInt32(); cw = w.GetInt32(); }
            else throw new NotSupportedException($"{path}: 'crop_size' = {crop.GetRawText()} is not supported");
        }
        float[] Floats(string key, float[] fallback)
        {
            if (!root.TryGetProperty(key, out var v)) return fallback;
            var a = v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(x => x.GetSingle()).ToArray() : [];
            return a.Length == 3 ? a : throw new InvalidDataException($"{path}: '{key}' must hold 3 numbers");
        }
        if (shortest < 1 || ch < 1 || cw < 1) throw new InvalidDataException($"{path}: sizes must be positive");
        return new ClipImageProcessor(shortest, ch, cw, Floats("image_mean", OpenAiClipMean), Floats("image_std", OpenAiClipStd));
    }

    /// <summary>pixel_values [1, 3, crop_height, crop_width] float32 on the CPU.</summary>
    public Tensor Preprocess(RgbImage image) => Preprocess(image, ShortestEdge, CropHeight, CropWidth, Mean, Std);

    /// <summary>See the type summary.</summary>
    public static Tensor Preprocess(RgbImage image, int shortestEdge, int cropHeight, int cropWidth, float[] mean, float[] std)
    {
        ArgumentNullException.ThrowIfNull(image);
        using var scope = torch.NewDisposeScope();
        var x = image.ToByteTensor().permute(2, 0, 1).unsqueeze(0).contiguous();
        int h = image.Height, w = image.Width;
        // transformers' get_resize_output_image_size(shortest_edge, default_to_square=False): the long side truncated,
        // as torchvision's _compute_resized_output_size
        var (nw, nh) = TorchvisionTransforms.ShorterSideSize(w, h, shortestEdge);
        if (nh != h || nw != w)
            x = nn.functional.interpolate(x, [nh, nw], mode: InterpolationMode.Bicubic, align_corners: false, antialias: true);   // libtorch's uint8 kernel, as torchvision calls it
        if (cropHeight > nh || cropWidth > nw)
            throw new NotSupportedException($"a {cropWidth}x{cropHeight} centre crop of a {nw}x{nh} resized image (torchvision would pad) is not supported");
        int top = TorchvisionTransforms.CenterCropOffset(nh, cropHeight), left = TorchvisionTransforms.CenterCropOffset(nw, cropWidth);
        x = x[.., .., top..(top + cropHeight), left..(left + cropWidth)];
        var m = torch.tensor(mean).reshape(1, 3, 1, 1) * 255f;
        var s = torch.tensor(std).reshape(1, 3, 1, 1) * 255f;
        return ((x.to(ScalarType.Float32) - m) / s).MoveToOuterDisposeScope();
    }
}
