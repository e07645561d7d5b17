using StbImageSharp;
using StbImageWriteSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Imaging;

/// <summary>How the channel axis of an image tensor is laid out.</summary>
public enum TensorLayout
{
    /// <summary>Whichever of [3,H,W] / [H,W,3] (optionally with a batch axis of 1) the shape allows; [3,H,3] is refused as ambiguous.</summary>
    Auto,
    /// <summary>[3,H,W] or [1,3,H,W].</summary>
    ChannelsFirst,
    /// <summary>[H,W,3] or [1,H,W,3] (what diffusers' <c>output_type="np"</c> gives).</summary>
    ChannelsLast,
}

/// <summary>
/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC): <c>Data[(y*Width + x)*3 + c]</c>.
/// </summary>
public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>HWC RGB bytes, length Width*Height*3.</summary>
    public byte[] Data { get; }

    public RgbImage(int width, int height) : this(width, height, new byte[checked(width * height * 3)]) { }

    public RgbImage(int width, int height, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (width < 1 || height < 1) throw new ArgumentException($"image size must be positive (got {width}x{height})");
        if (data.Length != checked(width * height * 3))
            throw new ArgumentException($"RGB data has {data.Length} bytes, expected {width}x{height}x3 = {width * height * 3}");
        Width = width; Height = height; Data = data;
    }

    public byte this[int x, int y, int c]
    {
        get => Data[(y * Width + x) * 3 + c];
        set => Data[(y * Width + x) * 3 + c] = value;
    }

    public RgbImage Clone() => new(Width, Height, (byte[])Data.Clone());

    /// <summary>The <paramref name="width"/> x <paramref name="height"/> region at (<paramref name="left"/>, <paramref name="top"/>), copied.</summary>
    public RgbImage Crop(int left, int top, int width, int height)
    {
        if (left < 0 || top < 0 || width < 0 || height < 0 || left + width > Width || top + height > Height)
            throw new ArgumentOutOfRangeException(nameof(left), $"crop {width}x{height} at ({left}, {top}) is outside the {Width}x{Height} image");
        var r = new RgbImage(width, height);
        for (int y = 0; y < height; y++)
            Array.Copy(Data, ((top + y) * Width + left) * 3, r.Data, y * width * 3, width * 3);
        return r;
    }

    /// <summary>An image of one colour.</summary>
    public static RgbImage Solid(int width, int height, byte r, byte g, byte b)
    {
        var img = new RgbImage(width, height);
        for (int i = 0; i < img.Data.Length; i += 3) { img.Data[i] = r; img.Data[i + 1] = g; img.Data[i + 2] = b; }
        return img;
    }

    /// <summary>The pixels as a uint8 [H, W, 3] tensor (CPU).</summary>
    public Tensor ToByteTensor() => torch.tensor(Data, [Height, Width, 3], ScalarType.Byte);

    /// <summary>
    /// Reads an image file (PNG, JPEG, BMP, GIF first frame, TGA, PSD, HDR, PNM) and converts it to RGB as
    /// Pillow's <c>Image.open(path).convert("RGB")</c> does: grey is replicated to the three channels, alpha
    /// is dropped (not composited), palettes are expanded, 16-bit samples keep their high byte.
    /// JPEG decoding is stb_image's, which can differ from libjpeg's by a level or so on some pixels.
    /// </summary>
    /// <exception cref="FileNotFoundException">the file does not exist.</exception>
    /// <exception cref="InvalidDataException">the file is not a readable image.</exception>
    public static RgbImage Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"image file not found: {path}", path);
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read image file '{path}': {e.Message}", e);
        }
        return Decode(bytes, path);
    }

    /// <summary>Decodes an encoded image (see <see cref="Load"/>); <paramref name="name"/> is used in error messages.</summary>
    public static RgbImage Decode(byte[] encoded, string name = "image")
    {
        ArgumentNullException.ThrowIfNull(encoded);
        if (encoded.Length == 0) throw new InvalidDataException($"cannot decode image '{name}': the file is empty");
        ImageResult result;
        try
        {
            result = ImageResult.FromMemory(encoded, StbImageSharp.ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"cannot decode image '{name}': {Describe(e.Message)}", e);
        }
        if (result is null || result.Data is null || result.Width < 1 || result.Height < 1)
            throw new InvalidDataException($"cannot decode image '{name}': no image data");
        if (result.Data.Length != (long)result.Width * result.Height * 3)
            throw new InvalidDataException($"cannot decode image '{name}': decoder returned {result.Data.Length} bytes for {result.Width}x{result.Height}");
        return new RgbImage(result.Width, result.Height, result.Data);
    }

    private static string Describe(string reason)
    {
        // stb's reason can be a buffer of NULs or other unprintable bytes: keep printable ASCII only
        var printable = new string(reason.Select(ch => ch >= ' ' && ch <= '~' ? ch : ' ').ToArray());
        var r = string.Join(' ', printable.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        return r switch
        {
            "unknown image type" => "unknown or unsupported image format (unknown image type)",
            "" => "corrupt or truncated image data (the decoder gave no reason)",
            _ => $"corrupt or unsupported image data ({r})",
        };
    }

    /// <summary>Encodes as an 8-bit RGB PNG.</summary>
    public byte[] EncodePng()
    {
        using var ms = new MemoryStream();
        new ImageWriter().WritePng(Data, Width, Height, StbImageWriteSharp.ColorComponents.RedGreenBlue, ms);
        return ms.ToArray();
    }

    /// <summary>Writes an 8-bit RGB PNG (creating the folder if needed).</summary>
    public void SavePng(string path) => PngFile.Write(path, EncodePng());

    /// <summary>
    /// The image as float32 [1,3,H,W] in [-1,1], exactly as diffusers' <c>VaeImageProcessor.preprocess</c>
    /// computes it: <c>2 * (x / 255) - 1</c> in float32 (bitwise equal to <c>x/127.5 - 1</c> for all 256 levels).
    /// </summary>
    public Tensor ToTensor()
    {
        int hw = Width * Height;
        var buf = new float[3 * hw];
        var lut = new float[256];
        for (int v = 0; v < 256; v++) lut[v] = 2f * (v / 255f) - 1f;
        for (int i = 0; i < hw; i++)
        {
            buf[i] = lut[Data[i * 3]];
            buf[hw + i] = lut[Data[i * 3 + 1]];
            buf[2 * hw + i] = lut[Data[i * 3 + 2]];
        }
        return torch.tensor(buf, new long[] { 1, 3, Height, Width }, ScalarType.Float32);
    }

    /// <summary>
    /// Converts one float image in [0,1] ([3,H,W], [H,W,3], or either with a batch axis of 1) to 8 bits as diffusers'
    /// <c>numpy_to_pil</c> does: clamp to [0,1], then <c>(x * 255).round()</c> in float32 (round half to even).
    /// </summary>
    public static RgbImage FromTensor(Tensor image, TensorLayout layout = TensorLayout.Auto)
    {
        ArgumentNullException.ThrowIfNull(image);
        var shape = image.shape;
        if (shape.Length == 4)
        {
            if (shape[0] != 1) throw new ArgumentException($"FromTensor takes one image; got a batch of {shape[0]} (use FromNormalizedBatch)");
            shape = shape[1..];
        }
        if (shape.Length != 3) throw new ArgumentException($"image tensor must be [3,H,W] or [H,W,3], got [{string.Join(",", image.shape)}]");
        bool chw = layout switch
        {
            TensorLayout.ChannelsFirst => true,
            TensorLayout.ChannelsLast => false,
            _ => shape[0] == 3 && shape[2] == 3
                ? throw new ArgumentException($"image tensor [{string.Join(",", image.shape)}] could be [3,H,W] or [H,W,3]; pass a TensorLayout")
                : shape[0] == 3,
        };
        if (chw ? shape[0] != 3 : shape[2] != 3)
            throw new ArgumentException($"image tensor must have 3 channels ({(chw ? "[3,H,W]" : "[H,W,3]")}), got [{string.Join(",", image.shape)}]");
        int h = (int)(chw ? shape[1] : shape[0]), w = (int)(chw ? shape[2] : shape[1]);
        using var scope = torch.NewDisposeScope();
        var t = image.detach().to(ScalarType.Float32).cpu().reshape(shape);
        if (chw) t = t.permute(1, 2, 0);
        var values = t.contiguous().data<float>().ToArray();
        var data = new byte[values.Length];
        for (int i = 0; i < values.Length; i++) data[i] = UnitToByte(values[i]);
        return new RgbImage(w, h, data);
    }

    /// <summary>
    /// Converts a decoded batch [N,3,H,W] in [-1,1] (a VAE output) to images as diffusers'
    /// <c>VaeImageProcessor.postprocess(output_type="pil")</c> does: <c>(x / 2 + 0.5).clamp(0, 1)</c> in the tensor's
    /// own dtype, then float32, then <c>(x * 255).round()</c>.
    /// </summary>
    public static RgbImage[] FromNormalizedBatch(Tensor batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.dim() != 4 || batch.shape[1] != 3)
            throw new ArgumentException($"batch must be [N,3,H,W], got [{string.Join(",", batch.shape)}]");
        using var scope = torch.NewDisposeScope();
        var x = (batch.detach() / 2 + 0.5).clamp(0, 1).to(ScalarType.Float32).cpu();
        var result = new RgbImage[batch.shape[0]];
        for (int n = 0; n < result.Length; n++) result[n] = FromTensor(x[n], TensorLayout.ChannelsFirst);
        return result;
    }

    /// <summary>numpy: <c>(np.clip(x,0,1) * 255).round().astype(uint8)</c> on float32 (NaN gives 0).</summary>
    internal static byte UnitToByte(float x)
    {
        if (!(x > 0f)) return 0;
        if (x >= 1f) return 255;
        return (byte)MathF.Round(x * 255f, MidpointRounding.ToEven);
    }

    /// <summary>Greyscale as Pillow's <c>convert("L")</c>: <c>(R*19595 + G*38470 + B*7471 + 0x8000) &gt;&gt; 16</c>.</summary>
    public GrayImage ToGray()
    {
        var g = new byte[Width * Height];
        for (int i = 0; i < g.Length; i++)
            g[i] = (byte)((Data[i * 3] * 19595 + Data[i * 3 + 1] * 38470 + Data[i * 3 + 2] * 7471 + 0x8000) >> 16);
        return new GrayImage(Width, Height, g);
    }
}

internal static class PngFile
{
    public static void Write(string path, byte[] png)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        try
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            File.WriteAllBytes(path, png);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new IOException($"cannot write image file '{path}': {e.Message}", e);
        }
    }
}
