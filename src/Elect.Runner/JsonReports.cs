using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Editing;

namespace Elect.Runner;

/// <summary>The JSON files of the elect command: per-edit reports, written atomically.</summary>
public static class JsonReports
{
    /// <summary>A JSON report of one edit: candidates and their BIS, the winner, model evaluations and phase times.</summary>
    public static JsonObject EditReport(string name, string instruction, EditResult result, IReadOnlyList<string> files, Editor? editor = null)
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
