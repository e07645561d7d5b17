using StbImageWriteSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Imaging;

/// <summary>An 8-bit single-channel image (masks), rows top to bottom: <c>Data[y*Width + x]</c>.</summary>
public sealed class GrayImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>Row-major bytes, length Width*Height.</summary>
    public byte[] Data { get; }

    public GrayImage(int width, int height) : this(width, height, new byte[checked(width * height)]) { }

    public GrayImage(int width, int height, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (width < 1 || height < 1) throw new ArgumentException($"image size must be positive (got {width}x{height})");
        if (data.Length != checked(width * height))
            throw new ArgumentException($"grey data has {data.Length} bytes, expected {width}x{height} = {width * height}");
        Width = width; Height = height; Data = data;
    }

    public byte this[int x, int y]
    {
        get => Data[y * Width + x];
        set => Data[y * Width + x] = value;
    }

    public GrayImage Clone() => new(Width, Height, (byte[])Data.Clone());

    /// <summary>The pixels as a uint8 [H, W] tensor (CPU).</summary>
    public TorchSharp.torch.Tensor ToByteTensor() => TorchSharp.torch.tensor(Data, [Height, Width], TorchSharp.torch.ScalarType.Byte);

    /// <summary>Reads an image file as Pillow's <c>Image.open(path).convert("L")</c> does (ITU-R 601 luma, alpha dropped).</summary>
    public static GrayImage Load(string path) => RgbImage.Load(path).ToGray();

    /// <summary>Encodes as an 8-bit greyscale PNG.</summary>
    public byte[] EncodePng()
    {
        using var ms = new MemoryStream();
        new ImageWriter().WritePng(Data, Width, Height, StbImageWriteSharp.ColorComponents.Grey, ms);
        return ms.ToArray();
    }

    /// <summary>Writes an 8-bit greyscale PNG (creating the folder if needed).</summary>
    public void SavePng(string path) => PngFile.Write(path, EncodePng());

    /// <summary>Replicates the grey level to the three channels (Pillow's <c>convert("RGB")</c> of an "L" image).</summary>
    public RgbImage ToRgb()
    {
        var d = new byte[Data.Length * 3];
        for (int i = 0; i < Data.Length; i++) d[i * 3] = d[i * 3 + 1] = d[i * 3 + 2] = Data[i];
        return new RgbImage(Width, Height, d);
    }

    /// <summary>
    /// A float map in [0,1] (row-major, <paramref name="width"/> x <paramref name="height"/>) to 8 bits the way the ELECT
    /// reference does it for its relevance mask: <c>(m * 255).astype(np.uint8)</c> - TRUNCATION, not rounding.
    /// This overload multiplies in float32 (numpy semantics for a float32 array); values outside [0,1] saturate, NaN gives 0.
    /// </summary>
    public static GrayImage FromUnitFloat(ReadOnlySpan<float> values, int width, int height)
    {
        CheckLength(values.Length, width, height);
        var d = new byte[values.Length];
        for (int i = 0; i < d.Length; i++) d[i] = Truncate(values[i] * 255f);
        return new GrayImage(width, height, d);
    }

    /// <summary>As the float32 overload, multiplying in float64 (numpy semantics for a float64 array).</summary>
    public static GrayImage FromUnitFloat(ReadOnlySpan<double> values, int width, int height)
    {
        CheckLength(values.Length, width, height);
        var d = new byte[values.Length];
        for (int i = 0; i < d.Length; i++) d[i] = Truncate(values[i] * 255.0);
        return new GrayImage(width, height, d);
    }

    /// <summary>
    /// A [H,W] (or [1,H,W] / [1,1,H,W]) float map in [0,1] to 8 bits by truncation (see the span overloads); float64
    /// tensors are multiplied in float64, every other dtype in float32.
    /// </summary>
    public static GrayImage FromUnitFloat(Tensor map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var (h, w) = MapSize(map);
        using var scope = torch.NewDisposeScope();
        var t = map.detach().cpu();
        if (t.dtype == ScalarType.Float64)
            return FromUnitFloat(t.contiguous().data<double>().ToArray(), w, h);
        return FromUnitFloat(t.to(ScalarType.Float32).contiguous().data<float>().ToArray(), w, h);
    }

    internal static (int H, int W) MapSize(Tensor map)
    {
        var s = map.shape;
        int lead = 0;
        while (s.Length - lead > 2 && s[lead] == 1) lead++;
        if (s.Length - lead != 2) throw new ArgumentException($"map must be [H,W] (optionally with leading axes of 1), got [{string.Join(",", s)}]");
        return ((int)s[lead], (int)s[lead + 1]);
    }

    private static void CheckLength(int n, int width, int height)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"map size must be positive (got {width}x{height})");
        if (n != (long)width * height) throw new ArgumentException($"map has {n} values, expected {width}x{height}");
    }

    private static byte Truncate(double v) => v >= 255.0 ? (byte)255 : v > 0.0 ? (byte)(int)v : (byte)0;
}
