using System.Text.Json;
using Xunit;
using Elect.Datasets;
using Elect.Evaluation;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Runner;

namespace Elect.Tests;

/// <summary>
/// MagicBrush's multi-turn (iterative) editing (edit_cli_single_multi_turn.py: turn t edits the model's own output of turn t-1,
/// outputs <c>{id}_1</c>, <c>{id}_iter_{t}</c>) and image_eval.py's final-turn setting. The pairing goldens,
/// Data/magicbrush/final_turn_pairs.json, come from image_eval.py's own get_final_turn_img / load_data
/// (scripts/goldens/make_magicbrush_final_turn_pairs.py).
/// </summary>
public sealed class MagicBrushIterativeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-mbiter-").FullName;

    public MagicBrushIterativeTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static RgbImage Pattern(int w, int h, int seed)
    {
        var img = new RgbImage(w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                    img.Data[(y * w + x) * 3 + c] = (byte)((x * (5 + seed) + y * (2 + c) + seed * 29 + c * 70) % 256);
        return img;
    }

    /// <summary>
    /// A published-layout test set (test/edit_sessions.json, test/images/{id}/{id}-input.png, -output{k}.png, -mask{k}.png,
    /// local_descriptions.json) with sessions of the given turn counts; <paramref name="emptyInstruction"/> blanks one turn's instruction.
    /// </summary>
    private string MakeTestSet(string name, IReadOnlyList<(string Id, int Turns)> sessions, (string Id, int Turn)? emptyInstruction = null, int size = 64)
    {
        var test = Path.Combine(_dir, name, "test");
        var json = new Dictionary<string, object>();
        var captions = new Dictionary<string, Dictionary<string, string>>();
        int seed = 0;
        foreach (var (id, n) in sessions)
        {
            var dir = Path.Combine(test, "images", id);
            Directory.CreateDirectory(dir);
            Pattern(size, size, seed++).SavePng(Path.Combine(dir, $"{id}-input.png"));
            var turns = new List<Dictionary<string, string>>();
            captions[id] = [];
            for (int k = 1; k <= n; k++)
            {
                Pattern(size, size, seed++).SavePng(Path.Combine(dir, $"{id}-output{k}.png"));
                new RgbImage(size, size).SavePng(Path.Combine(dir, $"{id}-mask{k}.png"));
                turns.Add(new()
                {
                    ["input"] = k == 1 ? $"{id}-input.png" : $"{id}-output{k - 1}.png", ["mask"] = $"{id}-mask{k}.png", ["output"] = $"{id}-output{k}.png",
                    ["instruction"] = emptyInstruction == (id, k) ? " " : $"edit {k} of {id}",
                });
                captions[id][$"{id}-output{k}.png"] = $"caption {k} of {id}";
            }
            json[id] = turns;
        }
        File.WriteAllText(Path.Combine(test, "edit_sessions.json"), JsonSerializer.Serialize(json));
        File.WriteAllText(Path.Combine(test, "local_descriptions.json"), JsonSerializer.Serialize(captions));
        return Path.GetDirectoryName(test)!;
    }

    private static readonly (string, int)[] Sessions = [("30", 1), ("139", 3), ("5", 2)];

    private static readonly string[] IterativeKeys = ["30_1", "139_1", "139_iter_2", "139_iter_3", "5_1", "5_iter_2"];

    private static string[] RunArgs(string root, string outDir, params string[] extra) =>
        ["run-dataset", "--dataset-dir", root, "--model-path", Fixtures.Ip2pTiny, "--device", "cpu", "--output-dir", outDir,
         "--resolution", "64", "--inference-steps", "2", "--magicbrush-turns", "iterative", .. extra];

    private static readonly string[] ElectArgs = ["--select-one-seed", "--candidate-seeds", "1", "2", "--stopping-step", "1", "--last-step-for-mask-extraction", "1"];

    private static EditReport Report(string dir, string key) => JsonFiles.FromJsonObject<EditReport>(File.ReadAllText(Path.Combine(dir, $"{key}_report.json")))!;

    private static string Chosen(string dir, string key) => Path.Combine(dir, EditOutputs.OutputFile(key, DatasetRunner.ChosenSeed(Report(dir, key))!.Value));

    [Fact]
    public void IterativeKeysShareTurnOneAndNameTheLaterTurnsIter()
    {
        var root = MakeTestSet("ds", Sessions);
        var (items, bad, _) = EditDataset.Load(root, MagicBrushCaptions.Local, MagicBrushTurns.Iterative);
        Assert.Empty(bad);
        Assert.Equal(IterativeKeys, items.Select(i => i.Key));
        Assert.Equal(["30_1", "139_1", "139_inde_2", "139_inde_3", "5_1", "5_inde_2"], EditDataset.Load(root).Items.Select(i => i.Key));
        Assert.Equal(("139", 3), (items[3].Session, items[3].Turn));
        Assert.Equal("139_iter_10", EditDataset.MagicBrushKey("139", 10, MagicBrushTurns.Iterative));
    }

    [Fact]
    public void TheFinalTurnPickEqualsImageEvalsOnItsNamingRules()
    {
        var golden = JsonDocument.Parse(File.ReadAllText(Repo.Data("magicbrush", "final_turn_pairs.json"))).RootElement;
        foreach (var s in golden.GetProperty("sessions").EnumerateObject())
        {
            string[] Names(string p) => s.Value.GetProperty(p).EnumerateArray().Select(e => e.GetString()!).ToArray();
            Assert.Equal(s.Value.GetProperty("final_gen").GetString(), MagicBrushPairing.FinalTurnGenerated(Names("gen_files")));
            Assert.Equal(s.Value.GetProperty("final_gt").GetString(), MagicBrushPairing.FinalTurnGroundTruth(Names("gt_files")));
            // the reference's listing order is os.listdir's: any order gives the same pick
            Assert.Equal(s.Value.GetProperty("final_gt").GetString(), MagicBrushPairing.FinalTurnGroundTruth(Names("gt_files").Reverse()));
        }
        Assert.Equal("7_iter_10.png", golden.GetProperty("sessions").GetProperty("7").GetProperty("final_gen").GetString());   // not iter_9: the digit key
        Assert.Equal(71, (int)MagicBrushPairing.DigitKey("7_1.png")!.Value);
        Assert.Null(MagicBrushPairing.DigitKey("x-output.png"));
        Assert.Null(MagicBrushPairing.FinalTurnGenerated(["9_1.png", "9_inde_2.png"]));   // the reference raises: no iter_ output
        Assert.Equal("9_1.png", MagicBrushPairing.FinalTurnGenerated(["9_1.png", "9_1_mask.png", "notes.txt"]));
    }

    [Fact]
    public void EvaluateFinalTurnPairsEachSessionAsLoadDataDoes()
    {
        var golden = JsonDocument.Parse(File.ReadAllText(Repo.Data("magicbrush", "final_turn_pairs.json"))).RootElement;
        var sessions = golden.GetProperty("sessions").EnumerateObject().Select(s => (s.Name, s.Value.GetProperty("turns").GetInt32())).ToList();
        var root = MakeTestSet("ds", sessions, size: 16);
        // a plain-run folder (seed 0, no reports) with every output the reference's folder has: {id}_1, {id}_iter_{t}, {id}_inde_{t}
        var outDir = Path.Combine(_dir, "plain");
        Directory.CreateDirectory(outDir);
        int seed = 50;
        foreach (var s in golden.GetProperty("sessions").EnumerateObject())
            foreach (var f in s.Value.GetProperty("gen_files").EnumerateArray())
                Pattern(16, 16, seed++).SavePng(Path.Combine(outDir, EditOutputs.OutputFile(Path.GetFileNameWithoutExtension(f.GetString()!), 0)));
        var csv = Path.Combine(_dir, "res", "evaluation_result.csv");
        var (items, summary) = DatasetEvaluation.Run(new EvaluationOptions
        {
            DatasetDir = root, Outputs = [outDir], Metrics = ["l1"], Seed = 0, ResultCsv = DatasetEvaluation.SettingFile(csv, MagicBrushSetting.FinalTurn),
            MagicBrushSetting = MagicBrushSetting.FinalTurn, OnSkip = line => Assert.Fail(line),
        });
        Assert.Equal("final_turn", summary.Setting);
        Assert.Equal(3, summary.Items);
        foreach (var s in golden.GetProperty("sessions").EnumerateObject())
        {
            var it = items.Single(i => i.Item.Key.StartsWith(s.Name + "_", StringComparison.Ordinal));
            var gen = Path.GetFileNameWithoutExtension(s.Value.GetProperty("final_gen").GetString()!);
            Assert.Equal(gen, it.Item.Key);
            Assert.Equal(Path.Combine(outDir, EditOutputs.OutputFile(gen, 0)), it.Methods[0].File);
            Assert.Equal(Path.Combine(root, "test", "images", s.Name, s.Value.GetProperty("final_gt").GetString()!), it.Item.Target!.ImagePath);
            Assert.Equal($"caption {s.Value.GetProperty("turns").GetInt32()} of {s.Name}", it.Item.Target.Caption);
            Assert.Equal(Path.Combine(root, "test", "images", s.Name, $"{s.Name}-input.png"), it.Item.ImagePath);
            Assert.Equal(MagicBrushMetrics.L1(RgbImage.Load(it.Methods[0].File!), RgbImage.Load(it.Item.Target.ImagePath)), it.Methods[0].Values["l1"], 1e-12);
        }
        // load_data's final-turn pairs (it runs on the sessions of up to 9 turns) are among ours
        foreach (var pair in golden.GetProperty("load_data").GetProperty("final_turn_pairs").EnumerateArray())
        {
            var gen = Path.GetFileNameWithoutExtension(pair[0].GetString()!);
            Assert.Contains(items, i => i.Item.Key == gen && Path.GetFileName(i.Item.Target!.ImagePath) == Path.GetFileName(pair[1].GetString()!));
        }
        var lines = File.ReadAllLines(Path.Combine(_dir, "res", "evaluation_result_final_turn.csv"));
        Assert.Equal(["file_id", "139_iter_3", "30_1", "7_iter_10"], lines.Select(l => l.Split(',')[0]).ToArray());   // one row per session, dataset order
        Assert.True(File.Exists(Path.Combine(_dir, "res", "evaluation_summary_final_turn.json")));
        Assert.Contains("| method (final_turn) | items | l1 |", DatasetEvaluation.Table(summary));
    }

    [Fact]
    public void EvaluateChoosesTheSettingFromTheOutputsAndSkipsAMissingFinalTurn()
    {
        var root = MakeTestSet("ds", Sessions, size: 16);
        var iter = Path.Combine(_dir, "iter");
        var inde = Path.Combine(_dir, "inde");
        Directory.CreateDirectory(iter);
        Directory.CreateDirectory(inde);
        foreach (var key in new[] { "30_1", "139_1", "139_iter_2", "5_1", "5_iter_2" })   // 139_iter_3 missing
            Pattern(16, 16, key.Length).SavePng(Path.Combine(iter, EditOutputs.OutputFile(key, 4)));
        foreach (var key in new[] { "30_1", "139_1", "139_inde_2", "139_inde_3", "5_1", "5_inde_2" })
            Pattern(16, 16, key.Length).SavePng(Path.Combine(inde, EditOutputs.OutputFile(key, 4)));
        Assert.Equal([MagicBrushSetting.FinalTurn], DatasetEvaluation.DefaultMagicBrushSettings(root, [iter]));
        Assert.Equal([MagicBrushSetting.AllTurn], DatasetEvaluation.DefaultMagicBrushSettings(root, [inde]));
        Assert.Equal([MagicBrushSetting.FinalTurn, MagicBrushSetting.AllTurn], DatasetEvaluation.DefaultMagicBrushSettings(root, [iter, inde]));

        var res = Path.Combine(_dir, "res");
        var (code, stdout, err) = CliHarness.Run("evaluate", "--dataset-dir", root, "--outputs", iter, "--seed", "4", "--metrics", "l1", "l2",
            "--result", Path.Combine(res, "e.csv"), "--log-level", "information");
        Assert.True(code == 0, err);
        Assert.Contains("| method (final_turn) | items | l1 | l2 |", stdout);
        Assert.Contains("| iter | 2 (1 skipped) |", stdout);
        Assert.Contains("skip 139_iter_3 (iter): output", err);   // not 139_iter_2 against the last ground truth
        Assert.DoesNotContain("all_turn", stdout);
        Assert.Equal(["file_id", "30_1", "139_iter_3", "5_iter_2"], File.ReadAllLines(Path.Combine(res, "e_final_turn.csv")).Select(l => l.Split(',')[0]));
        Assert.False(File.Exists(Path.Combine(res, "e.csv")));
        Assert.True(File.Exists(Path.Combine(res, "gallery_final_turn.html")));
        var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(res, "evaluation_summary_final_turn.json"))).RootElement;
        Assert.Equal("final_turn", summary.GetProperty("setting").GetString());

        (code, stdout, err) = CliHarness.Run("evaluate", "--dataset-dir", root, "--outputs", iter, inde, "--seed", "4", "--metrics", "l1",
            "--magicbrush-setting", "both", "--result", Path.Combine(res, "b.csv"), "--no-gallery", "--log-level", "warning");
        Assert.True(code == 0, err);
        Assert.Contains("| method (final_turn) | items | l1 |", stdout);
        Assert.Contains("| method (all_turn) | items | l1 |", stdout);
        Assert.Contains("| inde | 6 |", stdout);
        Assert.Equal(7, File.ReadAllLines(Path.Combine(res, "b.csv")).Length);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(res, "b_final_turn.csv")).Length);

        (code, _, err) = CliHarness.Run("evaluate", "--dataset-dir", root, "--outputs", iter, "--magicbrush-setting", "last", "--no-gallery");
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: --magicbrush-setting: 'last'", err);
    }

    [Fact]
    public void IterativeIsRefusedOnOtherDatasetsAndForSeveralPlainSeeds()
    {
        var generic = Path.Combine(_dir, "generic");
        Directory.CreateDirectory(generic);
        Pattern(16, 16, 1).SavePng(Path.Combine(generic, "a.png"));
        File.WriteAllText(Path.Combine(generic, "dataset.json"), """{"a": {"image_path": "a.png", "editing_instruction": "x"}}""");
        var (code, _, err) = CliHarness.Run("run-dataset", "--dataset-dir", generic, "--model-path", _dir, "--device", "cpu", "--output-dir", Path.Combine(_dir, "o"),
            "--magicbrush-turns", "iterative");
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: --magicbrush-turns iterative needs the published MagicBrush test set", err);
        Assert.Contains("is a generic dataset", err);
        Assert.Single(err.Trim().Split('\n'));
        var root = MakeTestSet("ds", Sessions, size: 16);
        (code, _, err) = CliHarness.Run("run-dataset", "--dataset-dir", root, "--model-path", _dir, "--device", "cpu", "--output-dir", Path.Combine(_dir, "o"),
            "--magicbrush-turns", "iterative", "--candidate-seeds", "1", "2");
        Assert.Equal(1, code);
        Assert.Contains("a plain run needs exactly one seed (got 2)", err);
        (code, _, err) = CliHarness.Run("run-dataset", "--dataset-dir", root, "--model-path", _dir, "--output-dir", Path.Combine(_dir, "o"), "--magicbrush-turns", "final");
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: --magicbrush-turns: 'final' is not independent or iterative", err);
        (code, _, err) = CliHarness.Run("evaluate", "--dataset-dir", generic, "--outputs", _dir, "--magicbrush-setting", "final-turn", "--no-gallery");
        Assert.Equal(1, code);
        Assert.StartsWith("elect: error: --magicbrush-setting final-turn: the dataset is not MagicBrush's", err);
    }

    [SkippableFact]
    public void RunDatasetIterativeEditsEachTurnFromThePreviousOutputAndResumesFromTheFirstMissingTurn()
    {
        Fixtures.Require();
        var root = MakeTestSet("ds", Sessions);
        var outDir = Path.Combine(_dir, "run");
        var (code, _, err) = CliHarness.Run([.. RunArgs(root, outDir, ElectArgs), "--log-level", "warning"]);
        Assert.True(code == 0, err);
        foreach (var key in IterativeKeys) Assert.True(File.Exists(Path.Combine(outDir, $"{key}_report.json")), key);
        Assert.Empty(Directory.EnumerateFiles(outDir, "*_inde_*"));
        Assert.Equal(Path.Combine(root, "test", "images", "139", "139-input.png"), Report(outDir, "139_1").ImagePath);
        foreach (var (key, prev) in new[] { ("139_iter_2", "139_1"), ("139_iter_3", "139_iter_2"), ("5_iter_2", "5_1") })
        {
            var previous = Chosen(outDir, prev);
            Assert.Equal(previous, Report(outDir, key).ImagePath);
            // the edited (and BIS reference) image is the previous output as written: {key}_input.png holds what the editor got
            Assert.Equal(RgbImage.Load(previous).Data, RgbImage.Load(Path.Combine(outDir, EditOutputs.InputFile(key))).Data);
        }
        Assert.NotEqual(RgbImage.Load(Path.Combine(root, "test", "images", "139", "139-output1.png")).Data,
                        RgbImage.Load(Path.Combine(outDir, EditOutputs.InputFile("139_iter_2"))).Data);

        // resume after deleting a middle turn's output: that turn and the later ones are redone, not the earlier ones
        var before = IterativeKeys.ToDictionary(k => k, k => File.GetLastWriteTimeUtc(Path.Combine(outDir, $"{k}_report.json")));
        File.Delete(Chosen(outDir, "139_iter_2"));
        Thread.Sleep(20);
        (code, _, err) = CliHarness.Run([.. RunArgs(root, outDir, ElectArgs), "--log-level", "information"]);
        Assert.True(code == 0, err);
        foreach (var key in IterativeKeys)
        {
            bool redone = key is "139_iter_2" or "139_iter_3";
            Assert.True(redone == (File.GetLastWriteTimeUtc(Path.Combine(outDir, $"{key}_report.json")) != before[key]), key);
        }
        var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, DatasetRunner.SummaryFile))).RootElement;
        Assert.Equal((2, 4, 6), (summary.GetProperty("done").GetInt32(), summary.GetProperty("skipped_resume").GetInt32(), summary.GetProperty("completed").GetInt32()));
        Assert.Equal(Chosen(outDir, "139_iter_2"), Report(outDir, "139_iter_3").ImagePath);

        // a plain run: the one seed's output feeds the next turn
        var plain = Path.Combine(_dir, "plain");
        (code, _, err) = CliHarness.Run([.. RunArgs(root, plain, "--seed", "3"), "--log-level", "warning"]);
        Assert.True(code == 0, err);
        Assert.Equal(Path.Combine(plain, "139_iter_2_output_3.png"), Report(plain, "139_iter_3").ImagePath);
    }

    [SkippableFact]
    public void AFailedTurnSkipsTheRestOfItsSession()
    {
        Fixtures.Require();
        var root = MakeTestSet("bad", Sessions, emptyInstruction: ("139", 2));
        var outDir = Path.Combine(_dir, "run");
        var (code, _, err) = CliHarness.Run([.. RunArgs(root, outDir, "--seed", "3"), "--log-level", "warning"]);
        Assert.Equal(3, code);
        Assert.Contains("2 item(s) failed", err);
        Assert.False(File.Exists(Path.Combine(outDir, "139_iter_3_report.json")));
        Assert.True(File.Exists(Path.Combine(outDir, "5_iter_2_report.json")));
        var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, DatasetRunner.SummaryFile))).RootElement;
        var failures = summary.GetProperty("failures").EnumerateArray().Select(f => (f.GetProperty("key").GetString(), f.GetProperty("error").GetString())).ToList();
        Assert.Equal([("139_iter_2", "empty editing instruction"),
                      ("139_iter_3", "not edited: turn 2 of session 139 (139_iter_2) failed; iterative editing edits the previous turn's output, so the session's later turns are skipped")], failures);
        Assert.Equal(4, summary.GetProperty("completed").GetInt32());
    }
}
