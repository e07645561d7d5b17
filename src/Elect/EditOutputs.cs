using Elect.Imaging;
using Elect.Selection;

namespace Elect;

/// <summary>
/// Writes an edit's files in the reference naming scheme:
/// <c>{input}_output_{seed}.png</c> per finished seed, <c>{input}_output-best_seed-{seed}.png</c>
/// (ELECT with all seeds kept), <c>{input}_output-mask.png</c> (ELECT), and the resized input as
/// <c>{input}_input.png</c>.
/// </summary>
public static class EditOutputs
{
    /// <summary>The reference's name of an input: its file name up to the first dot.</summary>
    public static string InputName(string path)
    {
        var name = Path.GetFileName(path);
        int dot = name.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 ? name[..dot] : name;
    }

    public static string OutputFile(string name, long seed) => $"{name}_output_{seed}.png";
    public static string BestFile(string name, long seed) => $"{name}_output-best_seed-{seed}.png";
    public static string MaskFile(string name) => $"{name}_output-mask.png";
    public static string InputFile(string name) => $"{name}_input.png";

    /// <summary>Writes the images of <paramref name="result"/>; returns the paths written.</summary>
    public static IReadOnlyList<string> Write(string outputDir, string name, RgbImage resizedInput, EditResult result)
    {
        Directory.CreateDirectory(outputDir);
        using var scope = TorchSharp.torch.NewDisposeScope();   // conversion temporaries
        var written = new List<string>();
        void Save(string file, Action<string> save)
        {
            var path = Path.Combine(outputDir, file);
            var dir = Path.GetDirectoryName(path);
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            var tmp = path + ".tmp";
            save(tmp);
            File.Move(tmp, path, overwrite: true);
            written.Add(path);
        }
        Save(InputFile(name), resizedInput.SavePng);
        foreach (var (seed, image) in result.Images)
        {
            var rgb = RgbImage.FromTensor(image);
            Save(OutputFile(name, seed), rgb.SavePng);
            if (result.BestSeed == seed && result.AllSeedsKept)
                Save(BestFile(name, seed), rgb.SavePng);
        }
        if (result.RelevanceMap is not null)
        {
            var mask = RelevanceMask.ToImage(result.RelevanceMap, resizedInput.Width, resizedInput.Height);
            Save(MaskFile(name), mask.SavePng);
        }
        return written;
    }
}
