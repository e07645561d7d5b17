using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Elect.Tests;

/// <summary>
/// A loopback-only imitation of the Hub's HTTP API (a minimal HTTP/1.1 server over a TcpListener on 127.0.0.1,
/// one request per connection): the listing <c>/api/models/{repo}/revision/{rev}</c> (with <c>sha</c> and
/// <c>siblings</c> carrying <c>size</c>, <c>blobId</c>, <c>lfs</c>), <c>/{repo}/resolve/{rev}/{path}</c> serving
/// small files directly and LFS files (those over <see cref="LfsThreshold"/> bytes or named *.safetensors) by a 302 to
/// <c>/cdn/{sha256}</c>, with Range support. Faults on demand: a cut connection, a corrupted body, a token or gate.
/// Bounded: at most <see cref="MaxRequests"/> requests, each with a 10 s read limit; disposing stops it.
/// </summary>
internal sealed class MockHub : IDisposable
{
    public const int MaxRequests = 500;
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";
    public long LfsThreshold { get; init; } = 1024;

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _requests;

    /// <summary>repo id -> (path -> bytes).</summary>
    public Dictionary<string, Dictionary<string, byte[]>> Repos { get; } = [];

    /// <summary>Paths whose next body is cut after this many bytes (once each).</summary>
    public ConcurrentDictionary<string, long> CutOnce { get; } = new();

    /// <summary>Paths served with one byte flipped (every time).</summary>
    public HashSet<string> Corrupt { get; } = [];

    /// <summary>Repositories that need <c>Authorization: Bearer {RequiredToken}</c> (401 without).</summary>
    public HashSet<string> Private { get; } = [];

    /// <summary>Repositories that answer 403 GatedRepo to any token but <see cref="RequiredToken"/>.</summary>
    public HashSet<string> Gated { get; } = [];
    public string RequiredToken { get; init; } = "hf_test_token";

    /// <summary>Every request line with its Range and Authorization headers: "GET /path | range | auth".</summary>
    public ConcurrentQueue<string> Log { get; } = new();

    public string Endpoint { get; }

    /// <summary>Answer listings with names only (as a mirror that ignores <c>?blobs=true</c>).</summary>
    public bool NamesOnly { get; set; }

    public MockHub()
    {
        _listener.Start();
        Endpoint = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _loop = Task.Run(Loop);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        _stop.Dispose();
    }

    /// <summary>Adds every file under <paramref name="folder"/> as the repository <paramref name="repoId"/>.</summary>
    public void AddFolder(string repoId, string folder)
    {
        var files = new Dictionary<string, byte[]>();
        foreach (var f in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
            files[Path.GetRelativePath(folder, f).Replace('\\', '/')] = File.ReadAllBytes(f);
        Repos[repoId] = files;
    }

    private bool IsLfs(string path, byte[] data) => data.Length > LfsThreshold || path.EndsWith(".safetensors", StringComparison.Ordinal);

    private async Task Loop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            if (Interlocked.Increment(ref _requests) > MaxRequests) { client.Dispose(); continue; }
            _ = Task.Run(async () =>
            {
                using (client)
                using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
                {
                    timeout.CancelAfter(TimeSpan.FromSeconds(10));
                    try { await Serve(client.GetStream(), timeout.Token); }
                    catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException) { }
                }
            });
        }
    }

    private async Task Serve(NetworkStream stream, CancellationToken cancel)
    {
        // request head
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await stream.ReadAsync(one, cancel) == 0) return;
            head.Append((char)one[0]);
            if (head.Length > 16384) return;
        }
        var lines = head.ToString().Split("\r\n");
        var target = lines[0].Split(' ')[1];
        var headers = lines.Skip(1).Where(l => l.Contains(':')).ToDictionary(l => l[..l.IndexOf(':')].Trim().ToLowerInvariant(), l => l[(l.IndexOf(':') + 1)..].Trim());
        headers.TryGetValue("range", out var range);
        headers.TryGetValue("authorization", out var auth);
        Log.Enqueue($"GET {target} | {range} | {auth}");
        var path = Uri.UnescapeDataString(target.Split('?')[0]);

        async Task Send(int code, string reason, IEnumerable<(string, string)> extra, byte[] body, long? cutAfter = null)
        {
            var sb = new StringBuilder($"HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Length: {body.Length}\r\n");
            foreach (var (k, v) in extra) sb.Append($"{k}: {v}\r\n");
            sb.Append("\r\n");
            await stream.WriteAsync(Encoding.ASCII.GetBytes(sb.ToString()), cancel);
            int n = cutAfter is { } c ? (int)Math.Min(c, body.Length) : body.Length;
            await stream.WriteAsync(body.AsMemory(0, n), cancel);
            await stream.FlushAsync(cancel);
        }
        Task Error(int code, string reason, string errorCode, string message) =>
            Send(code, reason, [("X-Error-Code", errorCode), ("X-Error-Message", message), ("Content-Type", "application/json")],
                Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { error = message })));

        if (path.StartsWith("/cdn/", StringComparison.Ordinal))
        {
            var sha = path["/cdn/".Length..];
            foreach (var (repoId, files) in Repos)
                foreach (var (p, data) in files)
                    if (Sha256(data) == sha)
                    {
                        await Body(p, data, range);
                        return;
                    }
            await Error(404, "Not Found", "EntryNotFound", "no such blob");
            return;
        }

        string? repo = Repos.Keys.FirstOrDefault(r => path.StartsWith($"/api/models/{r}/revision/", StringComparison.Ordinal) || path.StartsWith($"/{r}/resolve/", StringComparison.Ordinal));
        if (repo is null)
        {
            await Error(401, "Unauthorized", "RepoNotFound", "Repository not found");   // the Hub's answer to an unknown repo without a token
            return;
        }
        var token = auth?.StartsWith("Bearer ", StringComparison.Ordinal) == true ? auth[7..] : null;
        if (Private.Contains(repo) && token != RequiredToken)
        {
            await Error(401, "Unauthorized", "RepoNotFound", "Invalid username or password.");
            return;
        }
        if (Gated.Contains(repo) && token != RequiredToken)
        {
            await Error(token is null ? 401 : 403, token is null ? "Unauthorized" : "Forbidden", "GatedRepo", $"Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.");
            return;
        }
        var repoFiles = Repos[repo];
        if (path.StartsWith("/api/", StringComparison.Ordinal))
        {
            var rev = path[$"/api/models/{repo}/revision/".Length..];
            if (rev is not ("main" or Commit)) { await Error(404, "Not Found", "RevisionNotFound", $"Invalid rev id: {rev}"); return; }
            var siblings = repoFiles.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => NamesOnly ? (object)new { rfilename = kv.Key } : IsLfs(kv.Key, kv.Value)
                ? (object)new { rfilename = kv.Key, size = kv.Value.Length, blobId = GitBlobId(Encoding.ASCII.GetBytes($"version https://git-lfs.github.com/spec/v1\noid sha256:{Sha256(kv.Value)}\nsize {kv.Value.Length}\n")), lfs = new { sha256 = Sha256(kv.Value), size = kv.Value.Length, pointerSize = 134 } }
                : new { rfilename = kv.Key, size = kv.Value.Length, blobId = GitBlobId(kv.Value) });
            await Send(200, "OK", [("Content-Type", "application/json")], JsonSerializer.SerializeToUtf8Bytes(new { id = repo, sha = Commit, siblings }));
            return;
        }
        var rest = path[$"/{repo}/resolve/".Length..];
        var slash = rest.IndexOf('/');
        var (revision, file) = (rest[..slash], rest[(slash + 1)..]);
        if (revision is not ("main" or Commit)) { await Error(404, "Not Found", "RevisionNotFound", $"Invalid rev id: {revision}"); return; }
        if (!repoFiles.TryGetValue(file, out var bytes)) { await Error(404, "Not Found", "EntryNotFound", $"{file} does not exist on \"{revision}\""); return; }
        if (IsLfs(file, bytes))
        {
            var sha = Sha256(bytes);
            await Send(302, "Found", [("Location", $"/cdn/{sha}"), ("X-Repo-Commit", Commit), ("X-Linked-Etag", $"\"{sha}\""), ("X-Linked-Size", bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("ETag", $"\"{GitBlobId(bytes)}\"")], []);
            return;
        }
        await Body(file, bytes, range, [("X-Repo-Commit", Commit), ("ETag", $"\"{GitBlobId(bytes)}\"")]);

        async Task Body(string p, byte[] data, string? rangeHeader, (string, string)[]? extra = null)
        {
            if (Corrupt.Contains(p)) { data = (byte[])data.Clone(); data[data.Length / 2] ^= 0xFF; }
            long start = 0;
            if (rangeHeader is { } r && r.StartsWith("bytes=", StringComparison.Ordinal) && r.EndsWith('-'))
                start = long.Parse(r[6..^1], System.Globalization.CultureInfo.InvariantCulture);
            long? cut = CutOnce.TryRemove(p, out var c) ? c : null;
            var headersOut = (extra ?? []).ToList();
            if (start > 0)
            {
                headersOut.Add(("Content-Range", $"bytes {start}-{data.Length - 1}/{data.Length}"));
                await Send(206, "Partial Content", headersOut, data[(int)start..], cut);
            }
            else await Send(200, "OK", headersOut, data, cut);
        }
    }

    public static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static string GitBlobId(byte[] data) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {data.Length}\0"), .. data]));
}
