using Elect.Evaluation;
using Elect.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Elect.Models.Perceptual;

/// <summary>
/// LPIPS v0.1 with the SqueezeNet backbone (richzhang/PerceptualSimilarity, as torchmetrics'
/// <c>LearnedPerceptualImagePatchSimilarity(net_type='squeeze')</c> runs it): inputs in [-1,1] are shifted and scaled
/// (<c>(x - [-.030,-.088,-.188]) / [.458,.448,.450]</c>), run through torchvision's <c>squeezenet1_1.features</c> cut
/// into lpips' seven slices (after features 1, 4, 7, 9, 10, 11, 12), each feature map unit-normalised over channels
/// (<c>x / (sqrt(sum x^2) + 1e-10)</c>), the squared differences weighted by the 1x1 head <c>lin{k}</c> (no bias),
/// averaged over space and summed over the slices; the value is the mean over the batch.
/// Weights: torchvision's state_dict (<c>squeezenet1_1-*.pth</c>, keys <c>features.*</c>; <c>classifier.*</c> unused)
/// and lpips' <c>weights/v0.1/squeeze.pth</c> (keys <c>lin{k}.model.1.weight</c>), each as <c>.pth</c> (read by the
/// restricted pickle reader) or <c>.safetensors</c>.
/// </summary>
public sealed class LpipsSqueeze : IPairMetric, IDisposable
{
    private static readonly int[] FireIndices = [3, 4, 6, 7, 9, 10, 11, 12];
    private static readonly int[] Channels = [64, 128, 256, 384, 384, 512, 512];
    private readonly Dictionary<string, Tensor> _w;
    private readonly Tensor _shift, _scale;

    private LpipsSqueeze(Dictionary<string, Tensor> weights)
    {
        _w = weights;
        _shift = torch.tensor(new float[] { -.030f, -.088f, -.188f }).reshape(1, 3, 1, 1);
        _scale = torch.tensor(new float[] { .458f, .448f, .450f }).reshape(1, 3, 1, 1);
    }

    /// <summary>
    /// Loads from a folder holding the SqueezeNet weights (a file whose name starts with <c>squeezenet1_1</c>) and the
    /// LPIPS heads (<c>squeeze.pth</c> or <c>squeeze.safetensors</c>).
    /// </summary>
    /// <exception cref="FileNotFoundException">a file is missing.</exception>
    /// <exception cref="InvalidDataException">a weight is missing or has the wrong shape.</exception>
    public static LpipsSqueeze Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"LPIPS folder not found: {folder}");
        var net = Directory.GetFiles(folder).Where(f => Path.GetFileName(f).StartsWith("squeezenet1_1", StringComparison.Ordinal)
                                                        && (f.EndsWith(".pth", StringComparison.Ordinal) || f.EndsWith(".safetensors", StringComparison.Ordinal)))
                           .Order(StringComparer.Ordinal).FirstOrDefault()
                  ?? throw new FileNotFoundException($"{folder}: no squeezenet1_1*.pth or squeezenet1_1*.safetensors (torchvision's SqueezeNet 1.1 weights)");
        var lin = new[] { "squeeze.safetensors", "squeeze.pth" }.Select(n => Path.Combine(folder, n)).FirstOrDefault(File.Exists)
                  ?? throw new FileNotFoundException($"{folder}: no squeeze.pth or squeeze.safetensors (lpips' v0.1 SqueezeNet heads)");
        return FromFiles(net, lin);
    }

    /// <summary>Loads from the two weight files.</summary>
    public static LpipsSqueeze FromFiles(string squeezenetFile, string linFile)
    {
        var w = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            var net = Checkpoint.ReadTensors(squeezenetFile);
            var lin = Checkpoint.ReadTensors(linFile);
            void Take(Dictionary<string, Tensor> from, string file, string key, long[] shape)
            {
                if (!from.TryGetValue(key, out var t)) throw new InvalidDataException($"{file}: missing tensor '{key}'");
                if (!t.shape.SequenceEqual(shape))
                    throw new InvalidDataException($"{file}: tensor '{key}' has shape [{string.Join(", ", t.shape)}], SqueezeNet 1.1 LPIPS expects [{string.Join(", ", shape)}]");
                w[key] = t.to(ScalarType.Float32).contiguous();
            }
            Take(net, squeezenetFile, "features.0.weight", [64, 3, 3, 3]);
            Take(net, squeezenetFile, "features.0.bias", [64]);
            long inCh = 64;
            foreach (var (i, s, e) in new (int, long, long)[] { (3, 16, 64), (4, 16, 64), (6, 32, 128), (7, 32, 128), (9, 48, 192), (10, 48, 192), (11, 64, 256), (12, 64, 256) })
            {
                Take(net, squeezenetFile, $"features.{i}.squeeze.weight", [s, inCh, 1, 1]);
                Take(net, squeezenetFile, $"features.{i}.squeeze.bias", [s]);
                Take(net, squeezenetFile, $"features.{i}.expand1x1.weight", [e, s, 1, 1]);
                Take(net, squeezenetFile, $"features.{i}.expand1x1.bias", [e]);
                Take(net, squeezenetFile, $"features.{i}.expand3x3.weight", [e, s, 3, 3]);
                Take(net, squeezenetFile, $"features.{i}.expand3x3.bias", [e]);
                inCh = 2 * e;
            }
            var unexpected = net.Keys.Where(k => !w.ContainsKey(k) && !k.StartsWith("classifier.", StringComparison.Ordinal)).ToList();
            if (unexpected.Count > 0) throw new InvalidDataException($"{squeezenetFile}: unexpected tensor '{unexpected[0]}' (not SqueezeNet 1.1)");
            for (int k = 0; k < Channels.Length; k++) Take(lin, linFile, $"lin{k}.model.1.weight", [1, Channels[k], 1, 1]);
            foreach (var t in net.Values.Concat(lin.Values)) t.Dispose();
            return new LpipsSqueeze(w);
        }
        catch
        {
            foreach (var t in w.Values) t.Dispose();
            throw;
        }
    }

    private Tensor Conv(Tensor x, string name, long padding = 0, long stride = 1) =>
        F.conv2d(x, _w[name + ".weight"], _w.GetValueOrDefault(name + ".bias"), strides: [stride, stride], padding: [padding, padding]);

    private Tensor Fire(Tensor x, int i)
    {
        var s = F.relu(Conv(x, $"features.{i}.squeeze"));
        return torch.cat([F.relu(Conv(s, $"features.{i}.expand1x1")), F.relu(Conv(s, $"features.{i}.expand3x3", padding: 1))], 1);
    }

    private static Tensor Pool(Tensor x) => F.max_pool2d(x, [3, 3], [2, 2], ceil_mode: true);

    /// <summary>The seven slice outputs of lpips' SqueezeNet for inputs already shifted and scaled.</summary>
    private List<Tensor> Features(Tensor x)
    {
        var outs = new List<Tensor>();
        var h = F.relu(Conv(x, "features.0", stride: 2));
        outs.Add(h);
        h = Fire(Fire(Pool(h), 3), 4); outs.Add(h);
        h = Fire(Fire(Pool(h), 6), 7); outs.Add(h);
        h = Fire(Pool(h), 9); outs.Add(h);
        h = Fire(h, 10); outs.Add(h);
        h = Fire(h, 11); outs.Add(h);
        h = Fire(h, 12); outs.Add(h);
        return outs;
    }

    /// <summary>LPIPS of two batches [N,3,H,W] in [-1,1]: the mean over the batch.</summary>
    public double Distance(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dim() != 4 || a.shape[1] != 3)
            throw new ArgumentException($"LPIPS: inputs must be two [N,3,H,W] batches of the same shape, got [{string.Join(",", a.shape)}] and [{string.Join(",", b.shape)}]");
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var fa = Features((a.to(ScalarType.Float32) - _shift) / _scale);
        var fb = Features((b.to(ScalarType.Float32) - _shift) / _scale);
        Tensor? val = null;
        for (int k = 0; k < fa.Count; k++)
        {
            var na = fa[k] / (fa[k].pow(2).sum(1, keepdim: true).sqrt() + 1e-10);
            var nb = fb[k] / (fb[k].pow(2).sum(1, keepdim: true).sqrt() + 1e-10);
            var r = F.conv2d((na - nb).pow(2), _w[$"lin{k}.model.1.weight"]).mean([2, 3], keepdim: true);
            val = val is null ? r : val + r;
        }
        return (val!.sum() / a.shape[0]).item<float>();
    }

    /// <summary>PIE-Bench's <c>calculate_lpips</c>: images in [0,1] (masked already) mapped to [-1,1].</summary>
    public double Score(Tensor source, Tensor target)
    {
        using var scope = torch.NewDisposeScope();
        return Distance(source * 2 - 1, target * 2 - 1);
    }

    public void Dispose()
    {
        foreach (var t in _w.Values) t.Dispose();
        _shift.Dispose();
        _scale.Dispose();
    }
}
