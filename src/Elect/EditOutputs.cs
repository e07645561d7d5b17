using System.Text.Json;
using System.Text.Json.Nodes;
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

    /// <summary>A JSON report of one edit: candidates and their BIS, the winner, model evaluations and phase times.</summary>
    public static JsonObject Report(string name, string instruction, EditResult result, IReadOnlyList<string> files, Editor? editor = null)
    {
        var candidates = new JsonArray();
        for (int k = 0; k < result.Seeds.Count; k++)
        {
            var c = new JsonObject { ["seed"] = result.Seeds[k] };
            if (result.Bis is not null) c["bis"] = result.Bis[k];
            candidates.Add(c);
        }
        var o = new JsonObject
        {
            ["input"] = name,
            ["instruction"] = instruction,
            ["mode"] = result.BestSeed is null ? "plain" : "elect",
            ["steps"] = result.Steps,
            ["stopping_step"] = result.StoppingStep,
            ["candidates"] = candidates,
            ["best_seed"] = result.BestSeed,
            ["nfe"] = result.ModelEvaluations,
            ["nfe_best_of_n"] = result.BestOfNEvaluations,
            ["nfe_saved_fraction"] = result.BestOfNEvaluations == 0 ? 0 : Math.Round(1 - (double)result.ModelEvaluations / result.BestOfNEvaluations, 4),
            ["seconds"] = new JsonObject
            {
                ["prepare"] = Math.Round(result.Times.Prepare, 4),
                ["candidates"] = Math.Round(result.Times.Candidates, 4),
                ["selection"] = Math.Round(result.Times.Selection, 4),
                ["finish"] = Math.Round(result.Times.Finish, 4),
                ["decode"] = Math.Round(result.Times.Decode, 4),
                ["total"] = Math.Round(result.Times.Total, 4),
            },
            ["outputs"] = new JsonArray(files.Select(f => (JsonNode)JsonValue.Create(f)!).ToArray()),
        };
        if (editor is not null)
        {
            o["model"] = editor.Model.Name;
            o["device"] = editor.Model.Device.ToString();
            o["dtype"] = editor.Model.DType.ToString();
        }
        return o;
    }

    public static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes JSON atomically (temp file + rename).</summary>
    public static void WriteJson(string path, JsonNode node)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, node.ToJsonString(JsonOptions) + "\n");
        File.Move(tmp, path, overwrite: true);
    }
}
